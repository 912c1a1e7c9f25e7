// The experiment editor: the form that is the spec. It shows the prompts as token chips, aligns
// the corrupted prompt with the clean one, lets GN positions be picked on the tokens, checks
// every field with the same code that runs the experiment, and shows each error next to its
// control.

import { $, el, say } from './dom.js';
import { PRESETS } from './presets.js';

/** Where each spec field's errors are shown. */
const ERROR_SLOTS = {
  prompt: '#prompt-error',
  corrupted: '#corrupted-error',
  answer: '#answer-error',
  counter_answer: '#counter_answer-error',
  corruption: '#corruption-error',
  target: '#target-error',
  window: '#window-error',
  spec: '#spec-error',
  run: '#run-error',
};

export function clearErrors() {
  for (const slot of Object.values(ERROR_SLOTS)) say($(slot), '');
}

/** Shows an error next to the control it concerns. */
export function showFieldError(error) {
  const slot = ERROR_SLOTS[error?.field] ?? '#run-error';
  say($(slot), error?.message ?? String(error));
  return slot;
}

export class Editor {
  constructor(worker, { onChange } = {}) {
    this.worker = worker;
    this.onChange = onChange ?? (() => {});
    this.gnPositions = new Set();
    this.extraPrompts = [];
    this.model = { embedded: 'patchbay-ioi' };
    this.modelReady = false;
    this.timer = null;
    this.serial = 0;
    this.lastCheck = null;

    const presets = $('#preset');
    for (const [key, preset] of Object.entries(PRESETS)) presets.append(el('option', { text: preset.label, attrs: { value: key } }));
    presets.addEventListener('change', () => {
      if (presets.value) this.applyPreset(presets.value);
    });
    const inputs = [
      '#clean', '#corrupted', '#bos', '#answer', '#counter', '#answer-set', '#counter-set', '#metric', '#normalized', '#direction',
      '#component', '#positions', '#position-list', '#heads', '#window', '#gn-scale', '#gn-samples', '#seed',
      '#dataset-task', '#dataset-n', '#dataset-seed', '#dataset-names', '#dataset-template', '#detect',
    ];
    for (const id of inputs) {
      $(id).addEventListener('input', () => this.changed(id));
      $(id).addEventListener('change', () => this.changed(id));
    }
    for (const radio of document.querySelectorAll('input[name="corruption"]')) radio.addEventListener('change', () => this.changed());
    this.updateVisibility();
  }

  changed(id) {
    if (id && id !== '#preset') $('#preset').value = '';
    if (id === '#clean' || id === '#bos') this.gnPositions.clear();
    this.updateVisibility();
    this.schedule();
  }

  updateVisibility() {
    const gn = this.corruption() === 'gn';
    $('#str-fields').hidden = gn;
    $('#gn-fields').hidden = !gn;
    $('#position-list').hidden = $('#positions').value !== 'these';
    const component = $('#component').value;
    $('#heads-row').hidden = !['z', 'q', 'k', 'v', 'pattern'].includes(component);
    const task = $('#dataset-task').value;
    $('#answer-sets').hidden = $('#answer-sets-hint').hidden = $('#metric').value !== 'prob_diff' || Boolean(task);
    $('#dataset-fields').hidden = !task;
    $('#dataset-hint').hidden = !task;
    for (const e of document.querySelectorAll('.ioi-only')) e.hidden = task !== 'ioi';
    // Under GN with a dataset, the noised tokens come from the dataset's STR pairs.
    $('#gn-hint').textContent = task
      ? 'The dataset\'s STR pairs say which tokens to noise.'
      : 'Choose the tokens to noise (the key tokens):';
  }

  corruption() {
    return document.querySelector('input[name="corruption"]:checked').value;
  }

  applyPreset(key) {
    const preset = PRESETS[key];
    this.fromSpec({ version: 1, model: this.model, prepend_bos: true, seed: 0, window: null, ...preset.spec });
    $('#preset').value = key;
    $('#preset-about').textContent = preset.about;
  }

  /** The spec the form describes. */
  toSpec() {
    const list = (text) =>
      text
        .split(/[\s,]+/)
        .filter(Boolean)
        .map((t) => {
          const n = Number(t);
          if (!Number.isInteger(n) || n < 0) throw Object.assign(new Error(`"${t}" is not a position number`), { field: 'target' });
          return n;
        });
    const choice = (value, listText) => (value === 'these' ? list(listText) : value);
    const component = $('#component').value;
    const first = {
      clean: $('#clean').value,
      answer: $('#answer').value,
    };
    if ($('#counter').value !== '') first.counter_answer = $('#counter').value;
    // R and R' of probability difference: tokens separated by |, spaces kept.
    const set = (id) => $(id).value.split('|').filter((t) => t !== '');
    if ($('#metric').value === 'prob_diff') {
      if (set('#answer-set').length) first.answer_set = set('#answer-set');
      if (set('#counter-set').length) first.counter_set = set('#counter-set');
    }
    // The corrupted prompt is kept under GN too: it names the key tokens STR would swap.
    if (this.corruption() === 'str' || $('#corrupted').value) first.corrupted = $('#corrupted').value;
    let corruption;
    if (this.corruption() === 'str') {
      corruption = { method: 'str' };
    } else {
      corruption = {
        method: 'gn',
        positions: [...this.gnPositions].sort((a, b) => a - b),
        scale: Number($('#gn-scale').value),
        samples: Number($('#gn-samples').value),
      };
    }
    const size = Number($('#window').value);
    const target = { component, positions: choice($('#positions').value, $('#position-list').value) };
    if (['z', 'q', 'k', 'v', 'pattern'].includes(component)) target.heads = $('#heads').value;
    const task = $('#dataset-task').value;
    if (task && corruption.method === 'gn') corruption.positions = [];
    const dataset = task
      ? {
          task,
          n: Number($('#dataset-n').value),
          seed: Number($('#dataset-seed').value) || 0,
          names: $('#dataset-names').value,
          template: Number($('#dataset-template').value) || 0,
        }
      : undefined;
    const detect = $('#detect').value === 'threshold' ? { threshold: 0.2 } : { sigma: 2 };
    return {
      version: 1,
      model: this.model,
      prepend_bos: $('#bos').checked,
      prompts: task ? [] : [first, ...this.extraPrompts],
      ...(dataset ? { dataset } : {}),
      detect,
      corruption,
      metric: { kind: $('#metric').value, normalized: $('#normalized').checked },
      direction: $('#direction').value,
      target,
      window: size > 0 ? { size } : null,
      seed: Number($('#seed').value) || 0,
      attribution: false,
    };
  }

  /** Sets every control from a spec (a preset or a share link). */
  fromSpec(spec) {
    const d = spec.dataset;
    $('#dataset-task').value = d?.task ?? '';
    if (d) {
      $('#dataset-n').value = d.n;
      $('#dataset-seed').value = d.seed ?? 0;
      $('#dataset-names').value = d.names ?? 's2';
      $('#dataset-template').value = d.template ?? 0;
    }
    $('#detect').value = spec.detect?.threshold !== undefined ? 'threshold' : 'sigma';
    const [first, ...rest] = spec.prompts.length ? spec.prompts : [{ clean: $('#clean').value, corrupted: $('#corrupted').value, answer: $('#answer').value, counter_answer: $('#counter').value }];
    this.extraPrompts = rest;
    $('#clean').value = first?.clean ?? '';
    $('#corrupted').value = first?.corrupted ?? '';
    $('#answer').value = first?.answer ?? '';
    $('#counter').value = first?.counter_answer ?? '';
    $('#answer-set').value = (first?.answer_set ?? []).join('|');
    $('#counter-set').value = (first?.counter_set ?? []).join('|');
    $('#bos').checked = spec.prepend_bos !== false;
    const gn = spec.corruption.method === 'gn';
    document.querySelector(`input[name="corruption"][value="${gn ? 'gn' : 'str'}"]`).checked = true;
    this.gnPositions = new Set(gn ? spec.corruption.positions : []);
    if (gn) {
      $('#gn-scale').value = spec.corruption.scale ?? 3;
      $('#gn-samples').value = spec.corruption.samples ?? 10;
    }
    $('#seed').value = spec.seed ?? 0;
    $('#metric').value = spec.metric.kind;
    $('#normalized').checked = spec.metric.normalized !== false;
    $('#direction').value = spec.direction ?? 'denoising';
    $('#component').value = spec.target.component;
    const positions = spec.target.positions ?? 'each';
    $('#positions').value = Array.isArray(positions) ? 'these' : positions;
    $('#position-list').value = Array.isArray(positions) ? positions.join(', ') : '';
    $('#heads').value = Array.isArray(spec.target.heads) ? 'all' : (spec.target.heads ?? 'each');
    $('#window').value = String(spec.window?.size ?? 0);
    if (![...$('#window').options].some((o) => o.selected)) {
      $('#window').append(el('option', { text: `${spec.window.size} layers`, attrs: { value: String(spec.window.size) } }));
      $('#window').value = String(spec.window.size);
    }
    const note = $('#dataset-note');
    note.hidden = rest.length === 0;
    note.textContent = rest.length ? `This experiment is a dataset of ${spec.prompts.length} prompts; the editor shows the first.` : '';
    $('#preset').value = '';
    $('#preset-about').textContent = '';
    this.updateVisibility();
    this.schedule(0);
  }

  schedule(delay = 200) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  /** Re-tokenizes the prompts and checks the spec. */
  async refresh() {
    if (!this.modelReady) return;
    const serial = ++this.serial;
    clearErrors();
    const bos = $('#bos').checked;
    try {
      const clean = await this.worker.call('tokenize', { text: $('#clean').value, bos });
      const corrupted =
        this.corruption() === 'str' ? await this.worker.call('tokenize', { text: $('#corrupted').value, bos }) : null;
      if (serial !== this.serial) return;
      this.renderTokens(clean, corrupted);
    } catch (error) {
      if (serial === this.serial) showFieldError({ field: 'prompt', message: error.message });
      return;
    }
    let spec;
    try {
      spec = this.toSpec();
      const check = await this.worker.call('check', { spec });
      if (serial !== this.serial) return;
      this.lastCheck = { spec, check, ok: true };
    } catch (error) {
      if (serial !== this.serial) return;
      this.lastCheck = { spec, ok: false, error };
      showFieldError(error);
    }
    this.onChange(this.lastCheck);
  }

  renderTokens(clean, corrupted) {
    $('#clean-tokens').replaceChildren(
      ...clean.map((t, i) => el('li', { text: t.text, attrs: { title: `position ${i}, id ${t.id}` }, classes: ['chip'] })),
    );
    // STR: the two prompts position by position, differences marked.
    const table = $('#alignment');
    table.replaceChildren();
    if (corrupted) {
      const n = Math.max(clean.length, corrupted.length);
      const row = (label, tokens, other) => {
        const tr = el('div', { attrs: { role: 'row' }, classes: ['align-row'] });
        tr.append(el('span', { text: label, attrs: { role: 'rowheader' }, classes: ['align-label'] }));
        for (let i = 0; i < n; i++) {
          const t = tokens[i];
          const differs = !t || !other[i] || t.id !== other[i].id;
          const cell = el('span', {
            text: t ? t.text : '∅',
            attrs: { role: 'cell', title: t ? `position ${i}, id ${t.id}` : `position ${i}: no token` },
            classes: ['chip', ...(differs ? ['differs'] : []), ...(t ? [] : ['missing'])],
          });
          tr.append(cell);
        }
        return tr;
      };
      table.append(row('clean', clean, corrupted), row('corrupted', corrupted, clean));
    }
    // GN: click tokens to noise them.
    const toggles = $('#gn-tokens');
    toggles.replaceChildren(
      ...clean.map((t, i) => {
        const button = el('button', {
          text: t.text,
          attrs: { type: 'button', 'aria-pressed': String(this.gnPositions.has(i)), title: `position ${i}` },
          classes: ['chip', 'toggle'],
        });
        button.addEventListener('click', () => {
          if (this.gnPositions.has(i)) this.gnPositions.delete(i);
          else this.gnPositions.add(i);
          button.setAttribute('aria-pressed', String(this.gnPositions.has(i)));
          $('#preset').value = '';
          this.schedule(0);
        });
        return button;
      }),
    );
  }

  /** Offers the model's top predictions as answers. */
  renderSuggestions(top) {
    const box = $('#suggestions');
    box.replaceChildren();
    if (!top?.length) return;
    box.append(el('span', { text: 'Most likely next tokens: ', classes: ['hint'] }));
    for (const p of top.slice(0, 6)) {
      const use = (target) => {
        $(target).value = p.raw;
        this.changed(target);
      };
      const group = el('span', { classes: ['suggestion'] });
      group.append(el('span', { text: `${p.text} (${(100 * p.prob).toFixed(1)}%)`, classes: ['token'] }));
      for (const [label, target] of [['r', '#answer'], ['r′', '#counter']]) {
        const b = el('button', { text: label, attrs: { type: 'button', title: `Use ${p.text} as ${label}` }, classes: ['small'] });
        b.addEventListener('click', () => use(target));
        group.append(b);
      }
      box.append(group);
    }
  }
}
