// Guided lessons on the model that ships with the app (patchbay-ioi, trained in the repo on IOI
// and greater-than). Each step is an experiment, a short explanation, the claim the numbers
// show (measured on this model, and checked by the browser tests) and a question for the class.
// Where one of the paper's contrasts does not arise on this model, the step says so.

const IOI = {
  clean: 'When Mary and John went to the store, John gave a drink to',
  corrupted: 'When Mary and John went to the store, Mary gave a drink to',
  answer: ' Mary',
  counter_answer: ' John',
};

const base = {
  prompts: [IOI],
  corruption: { method: 'str' },
  metric: { kind: 'logit_diff', normalized: true },
  direction: 'denoising',
  target: { component: 'z', positions: 'all', heads: 'each' },
  window: null,
};

export const LESSONS = [
  {
    title: 'Where is the information? Patching the residual stream',
    text:
      'The clean prompt names Mary and John and then repeats John (S2); the model answers "Mary". In the corrupted ' +
      'prompt S2 is Mary, and the answer flips to John. Denoising copies one activation of the clean run into the ' +
      'corrupted run and measures how much of the clean logit difference comes back (1 = all of it). Here we patch ' +
      'the residual stream entering each layer, one position at a time.',
    claim:
      'Entering layers 0 and 1, everything sits at S2 (patching it restores 100%); entering layer 2, most of it ' +
      '(about 70%) has moved to the final position: layer 1 carries it from S2 to the end.',
    question: 'Why is every position before S2 exactly 0? (Hint: what can position 5 attend to?)',
    spec: { ...base, target: { component: 'resid_pre', positions: 'each' } },
  },
  {
    title: 'What patching measures: which heads matter',
    text:
      'Now we patch each attention head\'s output (hook_z) at every position, one head at a time. A head\'s cell ' +
      'says how much of the behaviour that head alone restores in the corrupted run.',
    claim:
      'Three heads carry the behaviour: 0.0 restores about 100% alone, 1.0 and 1.1 about 40% each; the other three ' +
      'heads stay under 20%.',
    question: 'Head 0.0 restores everything and 1.0 and 1.1 restore 40% each: why can the effects add up to more than 100%?',
    spec: base,
  },
  {
    title: 'Denoising vs noising: sufficient or necessary?',
    text:
      'Denoising patches clean activations into the corrupted run: is this component enough to restore the ' +
      'behaviour? Noising patches corrupted activations into the clean run: does the behaviour need it? On the ' +
      'right, noising: a necessary component reads negative.',
    claim:
      'On this model both directions name the same heads: noising 0.0 removes about 100% of the logit difference, ' +
      'and 1.0 and 1.1 about 45% each. The paper leaves comparing the two directions open; here they agree.',
    question:
      'Noising head 1.0 removes 45% of the logit difference, yet with 1.0 ablated the model still answers ' +
      'correctly 98% of the time. What does the logit difference see that accuracy does not?',
    spec: base,
    compare: { kind: 'direction' },
  },
  {
    title: 'STR vs Gaussian noise',
    text:
      'Symmetric token replacement swaps S2 for another name of the same length, so the corrupted prompt is a ' +
      'normal sentence with its own answer. Gaussian noise (ROME) adds noise to S2\'s token embedding instead, ' +
      'three times the embeddings\' standard deviation, over 10 samples.',
    claim:
      'Noise is a weaker corruption here: under GN the model still gives Mary about 30% (under STR: 0%). Both ' +
      'methods find heads 0.0, 1.0 and 1.1, but GN also lifts head 2.1 (about 0.26, against 0.15 under STR).',
    question: 'GN\'s corrupted prompt is out of distribution. Which of its findings would you trust less, and why?',
    spec: base,
    compare: { kind: 'corruption' },
  },
  {
    title: 'Probability vs logit difference, and negative components',
    text:
      'The same experiment measured by the probability of the answer (normalized) and by the logit difference. ' +
      'Probability cannot show a component that hurts by more than P(r) in the corrupted run, which is near 0 here.',
    claim:
      'Probability nearly hides the layer-1 heads (about 0.08 and 0.01, against 0.43 and 0.39 with logit ' +
      'difference): P(Mary) only rises once most of the logit difference is back. No head of this model has a ' +
      'negative effect, so there is no negative component to hide; GPT-2 small has two (heads 10.7 and 11.10 on ' +
      'IOI): load it above to see them.',
    question: 'Why does the logit difference show graded effects where the probability shows all-or-nothing?',
    spec: base,
    compare: { kind: 'metric' },
  },
  {
    title: 'Single layers vs a sliding window',
    text:
      'ROME patches windows of adjacent layers together. Here the attention output of all positions is patched one ' +
      'layer at a time and in windows of 3 layers; the results also show the sum of the single-layer effects over ' +
      'each window (choose it under "Show").',
    claim:
      'Every window restores the full behaviour, but so do layers 0 and 1 alone: summing single layers ' +
      'double-counts, and the window\'s peak is about 0.44 of the summed one. On this model windows blur rather than ' +
      'inflate; the paper finds GPT-2 XL\'s window peaks 1.4 to 1.75 times the summed single-layer peaks.',
    question: 'When layers act in series, what does a window\'s effect tell you that single layers do not, and what does it hide?',
    spec: { ...base, target: { component: 'attn_out', positions: 'all' }, window: { size: 3 } },
  },
  {
    title: 'Which tokens to corrupt',
    text:
      'The left map corrupts S2 (as before); the right one corrupts S1 and IO instead ("When Anna and Tom went to the ' +
      'store, John gave a drink to"). A corruption asks a question: different corruptions, different answers.',
    claim:
      'Corrupting S1 and IO finds the same three heads plus both layer-2 heads (2.0 and 2.1 each above 0.2, against ' +
      '0.10 and 0.15 when S2 is corrupted).',
    question: 'Wang et al. found different IOI heads under different corruptions of GPT-2 small. Which corruption would you report, and why both?',
    spec: base,
    compare: {
      spec: {
        ...base,
        prompts: [{ ...IOI, corrupted: 'When Anna and Tom went to the store, John gave a drink to' }],
      },
      captionA: 'S2 corrupted',
      captionB: 'S1 and IO corrupted',
    },
  },
  {
    title: 'Direct logit attribution vs patching: direct and indirect effects',
    text:
      'Patching a head (the heatmap above) measures its total effect: what it writes to the logits itself, and ' +
      'what it changes in the heads after it. Direct logit attribution (below) splits the clean run\'s final logit ' +
      'difference into what each head and MLP writes straight into it, read through the unembedding with the ' +
      'final LayerNorm\'s scale frozen. No patching is involved: it is one forward pass, read term by term.',
    claim:
      'The layer-1 heads write most of the clean logit difference directly: 1.0 about +5.0 and 1.1 about +4.9 of ' +
      '14.1. Head 0.0, which patching ranks first (about 100%), writes only about +0.3: its effect is indirect, ' +
      'through the heads that read what it wrote. DLA and patching agree on the layer-1 heads and disagree on 0.0.',
    question:
      'A study using only DLA would miss head 0.0. Which experiment would show that 0.0 matters, and through which heads?',
    spec: base,
    lens: 'dla_heads_clean',
  },
  {
    title: 'What attribution gets wrong, and how the exact check catches it',
    text:
      'Circuit discovery asks which connections carry the behaviour. Edge attribution patching (EAP) scores all 100 ' +
      'edges of this model at once, over 20 IOI prompts, with one gradient: score = (clean − corrupted input) · ' +
      '∂(logit difference)/∂input. That is a straight-line guess at what patching the edge would do. The exact check ' +
      'then patches: the top 10 edges kept with every other edge corrupted (faithfulness: 1 is the clean run, 0 the ' +
      'corrupted one), and the 20 best-scored edges one at a time, beside their scores (the list below the drawing).',
    claim:
      'EAP ranks the edge from the input into head 0.0\'s query only 12th, with a score of about 0.9; patched exactly ' +
      'it restores about 26.2 of the 27.8 logit difference, more than any other edge, and it tops the disagreements. ' +
      'Without it the top 10 edges give faithfulness about −0.05: attribution left out the root of the path.',
    question:
      'A query changes the logits through a softmax that is saturated here, where the gradient is nearly flat. Switch ' +
      'the method to EAP-IG, or tick AtP*\'s QK fix, and find the circuit again: where does that edge rank now?',
    spec: {
      ...base,
      prompts: [],
      dataset: { task: 'ioi', n: 20, seed: 2, names: 's2', template: 0 },
      target: { component: 'z', positions: 'all' },
      circuit: { method: 'eap', keep: { top: 10 }, checked: 20 },
    },
    circuit: true,
  },
];
