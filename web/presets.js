// Presets: complete experiments from the paper's settings. The app fills in the model.

const ioi = {
  clean: 'When Mary and John went to the store, John gave a drink to',
  corrupted: 'When Mary and John went to the store, Mary gave a drink to',
  answer: ' Mary',
  counter_answer: ' John',
};

/** The two-digit year tokens from `from` to `to`: "00", "01", ... */
const years = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i).padStart(2, '0'));

export const PRESETS = {
  ioi: {
    label: 'Indirect object identification (IOI)',
    about: 'Which heads move the indirect object\'s name to the end? The second "John" (S2) is swapped for "Mary", so the answer flips.',
    spec: {
      prompts: [ioi],
      corruption: { method: 'str' },
      metric: { kind: 'logit_diff', normalized: true },
      direction: 'denoising',
      target: { component: 'z', positions: 'all', heads: 'each' },
    },
  },
  factual: {
    label: 'Factual recall',
    about: 'Where does the model look up where the Eiffel Tower is? The subject is swapped for the Colosseum (same token length).',
    spec: {
      prompts: [
        {
          clean: 'The Eiffel Tower is in the city of',
          corrupted: 'The Colosseum is in the city of',
          answer: ' Paris',
          counter_answer: ' Rome',
        },
      ],
      corruption: { method: 'str' },
      metric: { kind: 'logit_diff', normalized: true },
      direction: 'denoising',
      target: { component: 'mlp_out', positions: 'each', heads: 'each' },
    },
  },
  greater: {
    label: 'Greater-than',
    about:
      'Does the model know the end year comes after 1732? The corrupted start year 1701 leaves every end year possible. ' +
      'Measured as Hanna et al. do: P(33…99) − P(00…32), the probability of a later year minus that of an earlier one.',
    spec: {
      prompts: [
        {
          clean: 'The war lasted from the year 1732 to the year 17',
          corrupted: 'The war lasted from the year 1701 to the year 17',
          answer: '89',
          counter_answer: '12',
          answer_set: years(33, 99),
          counter_set: years(0, 32),
        },
      ],
      corruption: { method: 'str' },
      metric: { kind: 'prob_diff', normalized: true },
      direction: 'denoising',
      target: { component: 'resid_pre', positions: 'each', heads: 'each' },
    },
  },
  induction: {
    label: 'Induction',
    about: 'A repeated sequence: after "window" the model should copy what followed it the first time ("guitar"). The corrupted prompt breaks the first "window".',
    spec: {
      prompts: [
        {
          clean: ' apple river mountain yellow window guitar silver forest apple river mountain yellow window',
          corrupted: ' apple river mountain yellow lamp guitar silver forest apple river mountain yellow window',
          answer: ' guitar',
          counter_answer: ' silver',
        },
      ],
      corruption: { method: 'str' },
      metric: { kind: 'logit_diff', normalized: true },
      direction: 'denoising',
      target: { component: 'z', positions: 'all', heads: 'each' },
    },
  },
};
