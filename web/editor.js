// The experiment editor. Its truth is a spec (held here), not the form: `fromSpec` holds a spec
// and shows it in the controls, and each control writes its own field into the held spec, so
// that a spec the form cannot fully show (a list of heads, receiver heads, σ texts, a detection
// value or a window size the menus lack, extra prompts) runs exactly as written;
// what a control cannot show is shown read-only beside it, with a way to clear it. The menus
// come from the core's catalog. The editor shows the prompts as token chips, aligns the
// corrupted prompt with the clean one, lets GN positions be picked on the tokens, checks the
// spec with the same code that runs it, and shows each error next to its control.

import { $, el, say } from './dom.js';
import { PRESETS } from './presets.js';
import { cloneSpec, intFrom, numText, specText } from './spec.js';

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

/** The value of a menu option that stands for a held value the menu does not offer. */
const HELD = 'held';
const option = (value, text) => el('option', { text, attrs: { value } });
const quoted = (t) => `“${t}”`;
const list = (v) => (Array.isArray(v) ? v.join(', ') : String(v));

/** Whether two JSON values are equal, whatever the order of their keys. */
function sameValue(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => sameValue(a[k], b[k]));
}

/** A template menu's value as the spec writes it: "all", or the template's index. */
const templateFrom = (value) => (value === 'all' ? 'all' : intFrom(value));

/** Sets `obj[key]` to `value`, or removes it when `value` is empty. */
function setOptional(obj, key, value) {
  if (value === '' || (Array.isArray(value) && value.length === 0)) delete obj[key];
  else obj[key] = value;
}

export class Editor {
  /**
   * @param worker  the WorkerClient
   * @param catalog the core's choices (`catalog()` in crates/web)
   * @param model   the model a preset runs on before any is loaded
   */
  constructor(worker, catalog, { onChange, model } = {}) {
    this.worker = worker;
    this.catalog = catalog;
    this.onChange = onChange ?? (() => {});
    this.defaultModel = model;
    this.spec = null;
    /** " (from the link)" when the held spec came with a link. */
    this.source = '';
    /** What a control put aside and gives back: the prompts under a dataset, GN under STR. */
    this.stash = { prompts: null, gn: null };
    /** Text a control cannot turn into the spec, by field: the error it gets. */
    this.invalid = {};
    /** The positions GN noises when the spec names none (the tokens STR changes). */
    this.autoPositions = [];
    this.modelReady = false;
    this.timer = null;
    this.serial = 0;
    this.lastCheck = null;
    this.populate();
    this.wire();
  }

  component(name = this.spec?.target.component) {
    return this.catalog.components.find((c) => c.name === name);
  }

  /** The menus, from the catalog: index.html holds none of the core's lists. */
  populate() {
    const c = this.catalog;
    const fill = (id, items, keep = 0) => {
      const select = $(id);
      select.replaceChildren(...[...select.options].slice(0, keep), ...items);
    };
    fill('#preset', Object.entries(PRESETS).map(([key, p]) => option(key, p.label)), 1);
    fill('#component', c.components.map((x) => option(x.name, x.label)));
    fill('#metric', c.metrics.map((x) => option(x.name, x.label)));
    fill('#direction', c.directions.map((x) => option(x.name, x.label)));
    fill('#dataset-task', c.tasks.map((x) => option(x.name, x.label)), 1);
    fill('#dataset-names', c.ioi_names.map((x) => option(x.name, x.label)));
    fill('#positions', c.positions.map((x) => option(x.name, x.label)));
    fill('#heads', c.heads.map((x) => option(x.name, x.label)));
    fill('#receivers', c.receivers.map((x) => option(x.name, x.label)));
    fill('#window', c.windows.map((w) => option(String(w.size), w.label)));
    fill('#detect', c.detect.map((d) => option(d.rule, d.label)));
    fill('#dataset-template', c.ioi_templates.map((t) => option(String(t.value), t.label)));
    fill('#normalize', c.normalize.map((x) => option(x.name, x.label)));
    // Both normalizations' formulas, under the menu that chooses between them.
    $('#normalize-formulas').replaceChildren(
      ...c.normalize.map((n) => el('p', { text: `${n.label}: ${n.formula}` })),
      el('p', { text: `where ${c.normalize_terms}.` }),
    );
    $('#gn-scale').value = String(c.gn.scale);
    $('#gn-samples').value = String(c.gn.samples);
  }

  wire() {
    $('#preset').addEventListener('change', () => {
      if ($('#preset').value) this.applyPreset($('#preset').value);
    });
    const s = () => this.spec;
    const handlers = {
      '#clean': (e) => (this.pair().clean = e.value),
      '#corrupted': (e) => setOptional(this.pair(), 'corrupted', e.value),
      '#answer': (e) => (this.pair().answer = e.value),
      '#counter': (e) => setOptional(this.pair(), 'counter_answer', e.value),
      // R and R' of probability difference: tokens separated by |, spaces kept.
      '#answer-set': (e) => setOptional(this.pair(), 'answer_set', e.value.split('|').filter((t) => t !== '')),
      '#counter-set': (e) => setOptional(this.pair(), 'counter_set', e.value.split('|').filter((t) => t !== '')),
      '#bos': (e) => (s().prepend_bos = e.checked),
      '#attribution': (e) => (s().attribution = e.checked),
      '#metric': (e) => (s().metric.kind = e.value),
      '#normalized': (e) => (s().metric.normalized = e.checked),
      '#normalize': (e) => (s().metric.normalize = e.value),
      '#direction': (e) => (s().direction = e.value),
      '#component': (e) => this.setComponent(e.value),
      '#positions': (e) => {
        if (e.value === 'these') this.setPositionList($('#position-list').value);
        else {
          s().target.positions = e.value;
          delete this.invalid.target;
        }
      },
      '#position-list': (e) => this.setPositionList(e.value),
      '#heads': (e) => e.value !== HELD && (s().target.heads = e.value),
      '#receivers': (e) => e.value !== HELD && (s().target.receivers = e.value),
      '#window': (e) => {
        if (e.value === HELD) return;
        const size = Number(e.value);
        s().window = size > 0 ? { size } : null;
      },
      '#detect': (e) => {
        const rule = this.catalog.detect.find((d) => d.rule === e.value);
        if (rule) s().detect = { [rule.rule]: structuredClone(rule.value) };
      },
      '#gn-scale': (e) => this.gn() && (this.gn().scale = Number(e.value)),
      '#gn-samples': (e) => this.gn() && (this.gn().samples = intFrom(e.value)),
      '#seed': (e) => (s().seed = intFrom(e.value)),
      '#dataset-task': (e) => this.setTask(e.value),
      '#dataset-n': (e) => s().dataset && (s().dataset.n = intFrom(e.value)),
      '#dataset-seed': (e) => s().dataset && (s().dataset.seed = intFrom(e.value)),
      '#dataset-names': (e) => s().dataset && (s().dataset.names = e.value),
      '#dataset-template': (e) => e.value !== HELD && s().dataset && (s().dataset.template = templateFrom(e.value)),
    };
    for (const [id, handler] of Object.entries(handlers)) {
      for (const event of ['input', 'change']) $(id).addEventListener(event, () => this.edit(id, () => handler($(id))));
    }
    for (const radio of document.querySelectorAll('input[name="corruption"]')) {
      radio.addEventListener('change', () => this.edit(null, () => this.setCorruption(radio.value)));
    }
  }

  /** Applies one control's edit to the held spec, then shows the spec again (but that control). */
  edit(id, apply) {
    if (!this.spec) return;
    apply();
    $('#preset').value = '';
    $('#preset-about').textContent = '';
    this.render({ except: id });
    this.schedule();
  }

  /** Sets a text field as if typed (a suggested answer). */
  setField(id, value) {
    $(id).value = value;
    $(id).dispatchEvent(new Event('input'));
  }

  /** The first prompt pair, which the form edits; made from the fields if there is none. */
  pair() {
    const s = this.spec;
    if (!s.prompts.length) {
      const pair = { clean: $('#clean').value, answer: $('#answer').value };
      setOptional(pair, 'corrupted', $('#corrupted').value);
      setOptional(pair, 'counter_answer', $('#counter').value);
      s.prompts.push(pair);
    }
    return s.prompts[0];
  }

  /** Whether the experiment has more than one prompt (a dataset, or several pairs). */
  manyPrompts() {
    return Boolean(this.spec.dataset) || this.spec.prompts.length > 1;
  }

  gn() {
    return this.spec.corruption.method === 'gn' ? this.spec.corruption : null;
  }

  setComponent(name) {
    const t = this.spec.target;
    const c = this.component(name);
    t.component = name;
    if (!c.heads) t.heads = 'each';
    if (!c.positions) {
      t.positions = 'each';
      delete this.invalid.target;
    }
    if (name === 'path') t.receivers ??= 'logits';
    else delete t.receivers;
  }

  setPositionList(text) {
    const words = text.split(/[\s,]+/).filter(Boolean);
    const bad = words.find((w) => !/^\d+$/.test(w));
    if (bad !== undefined) {
      this.invalid.target = `"${bad}" is not a position number`;
      return;
    }
    delete this.invalid.target;
    this.spec.target.positions = words.map(Number);
  }

  setTask(task) {
    const s = this.spec;
    if (!task) {
      if (!s.dataset) return;
      delete s.dataset;
      if (!s.prompts.length && this.stash.prompts) s.prompts = this.stash.prompts;
      return;
    }
    if (s.dataset) {
      s.dataset.task = task;
      return;
    }
    // The generated prompts replace the pair, which comes back when the dataset is turned off.
    if (s.prompts.length) this.stash.prompts = s.prompts;
    s.prompts = [];
    s.dataset = {
      task,
      n: intFrom($('#dataset-n').value) || 1,
      seed: intFrom($('#dataset-seed').value),
      names: $('#dataset-names').value,
      template: templateFrom($('#dataset-template').value),
    };
  }

  setCorruption(method) {
    const s = this.spec;
    if (s.corruption.method === method) return;
    if (method === 'str') {
      this.stash.gn = s.corruption;
      s.corruption = { method: 'str' };
    } else {
      // No positions: the core noises the tokens the corrupted prompt changes.
      s.corruption = this.stash.gn ?? { method: 'gn', positions: [], scale: this.catalog.gn.scale, samples: this.catalog.gn.samples };
    }
  }

  applyPreset(key) {
    const preset = PRESETS[key];
    this.fromSpec({ version: 1, model: this.spec?.model ?? this.defaultModel, prepend_bos: true, seed: 0, window: null, ...preset.spec });
    $('#preset').value = key;
    $('#preset-about').textContent = preset.about;
  }

  /** Holds `spec` (a preset or a link's) and shows it; `source` says where it came from. */
  fromSpec(spec, source = '') {
    this.spec = cloneSpec(spec);
    this.source = source;
    this.stash = { prompts: null, gn: null };
    this.invalid = {};
    this.autoPositions = [];
    $('#preset').value = '';
    $('#preset-about').textContent = '';
    this.render();
    this.schedule(0);
  }

  /** The model the experiment names. */
  setModel(model) {
    this.spec.model = model;
  }

  /** The held spec as canonical JSON text (the core's), which is what runs and what links carry. */
  async canonical() {
    const [field, message] = Object.entries(this.invalid)[0] ?? [];
    if (field) throw Object.assign(new Error(message), { field });
    return this.worker.call('parseSpec', { spec: specText(this.spec) });
  }

  /** Shows the held spec in the controls (all but `except`, which is being typed in). */
  render({ except = null } = {}) {
    const s = this.spec;
    const c = this.catalog;
    const set = (id, prop, value) => {
      if (id !== except) $(id)[prop] = value;
    };
    const d = s.dataset;
    const t = s.target;
    const pair = s.prompts[0] ?? this.stash.prompts?.[0] ?? {};
    set('#clean', 'value', pair.clean ?? '');
    set('#corrupted', 'value', pair.corrupted ?? '');
    set('#answer', 'value', pair.answer ?? '');
    set('#counter', 'value', pair.counter_answer ?? '');
    set('#answer-set', 'value', (pair.answer_set ?? []).join('|'));
    set('#counter-set', 'value', (pair.counter_set ?? []).join('|'));
    // A generated dataset replaces the pair: its fields are read-only while it does.
    for (const id of ['#clean', '#corrupted', '#answer', '#counter', '#answer-set', '#counter-set']) $(id).disabled = Boolean(d);
    set('#bos', 'checked', s.prepend_bos !== false);
    set('#attribution', 'checked', Boolean(s.attribution));
    const gn = this.gn();
    for (const radio of document.querySelectorAll('input[name="corruption"]')) radio.checked = radio.value === s.corruption.method;
    if (gn) {
      set('#gn-scale', 'value', numText(gn.scale ?? c.gn.scale));
      set('#gn-samples', 'value', numText(gn.samples ?? c.gn.samples));
    }
    set('#seed', 'value', numText(s.seed ?? 0));
    set('#metric', 'value', s.metric.kind);
    set('#normalized', 'checked', s.metric.normalized !== false);
    set('#normalize', 'value', s.metric.normalize ?? c.normalize[0].name);
    set('#direction', 'value', s.direction ?? 'denoising');
    set('#component', 'value', t.component);
    const positions = t.positions ?? 'each';
    set('#positions', 'value', Array.isArray(positions) ? 'these' : positions);
    if (Array.isArray(positions)) set('#position-list', 'value', positions.join(', '));
    else if (except !== '#position-list' && except !== '#positions') $('#position-list').value = '';
    const heads = t.heads ?? 'each';
    this.hold('#heads', Array.isArray(heads) ? `Heads ${list(heads)} together${this.source}` : null, heads);
    const receivers = t.receivers ?? 'logits';
    this.hold('#receivers', receivers === 'logits' ? null : `${this.receiversText(receivers)}${this.source}`, receivers);
    const size = s.window?.size ?? 0;
    const menuWindow = c.windows.some((w) => w.size === size);
    this.hold('#window', menuWindow ? null : `${size} layers${this.source}`, String(size));
    const detect = s.detect ?? { sigma: c.detect[0].value };
    const rule = c.detect.find((r) => Object.keys(detect).length === 1 && sameValue(detect[r.rule], r.value));
    this.hold('#detect', rule ? null : '…', rule?.rule);
    if (!rule) {
      this.worker.call('describeDetect', { detect }).then((text) => {
        const held = $('#detect').querySelector('option.held');
        if (held) held.textContent = `${text}${this.source}`;
      });
    }
    set('#dataset-task', 'value', d?.task ?? '');
    if (d) {
      set('#dataset-n', 'value', numText(d.n));
      set('#dataset-seed', 'value', numText(d.seed ?? 0));
      set('#dataset-names', 'value', d.names ?? 's2');
      const template = d.template ?? 0;
      const offered = c.ioi_templates.some((x) => x.value === template);
      this.hold('#dataset-template', offered ? null : `Template ${numText(template)}${this.source}`, String(template));
    }
    this.updateVisibility();
    this.renderKept();
  }

  /** Selects `value` in a menu, or, with `heldText`, an option standing for a held value. */
  hold(id, heldText, value) {
    const select = $(id);
    select.querySelector('option.held')?.remove();
    if (heldText === null) {
      select.value = value;
      return;
    }
    const held = option(HELD, heldText);
    held.classList.add('held');
    select.append(held);
    select.value = HELD;
  }

  receiversText(r) {
    const heads = r.heads.map(([l, h]) => `${l}.${h}`).join(', ');
    const at = r.positions ? ` at positions ${r.positions.join(', ')}` : '';
    return `The ${r.input} of heads ${heads}${at}`;
  }

  updateVisibility() {
    const s = this.spec;
    const d = s.dataset;
    const c = this.component();
    const gn = this.gn();
    $('#gn-fields').hidden = !gn;
    $('#positions-row').hidden = !c.positions;
    $('#position-list').hidden = !c.positions || $('#positions').value !== 'these';
    $('#heads-row').hidden = !c.heads;
    $('#receivers-row').hidden = s.target.component !== 'path';
    // Shown where the core computes it, and wherever a link turned it on (to turn it off).
    $('#attribution-row').hidden = !(this.catalog.attribution && c.attribution) && !s.attribution;
    // How prompts' normalized effects are combined matters only with more than one prompt.
    $('#normalize-row').hidden = !this.manyPrompts() || s.metric.normalized === false;
    $('#normalize-formulas').hidden = $('#normalize-row').hidden;
    $('#answer-sets').hidden = $('#answer-sets-hint').hidden = s.metric.kind !== 'prob_diff' || Boolean(d);
    $('#dataset-fields').hidden = !d;
    $('#dataset-hint').hidden = !d;
    for (const e of document.querySelectorAll('.ioi-only')) e.hidden = d?.task !== 'ioi';
    let hint = 'Choose the tokens to noise (the key tokens).';
    if (gn && !gn.positions.length) {
      hint = d
        ? 'No tokens chosen: the tokens the dataset\'s STR pairs change are noised (marked). Click tokens to choose others.'
        : 'No tokens chosen: the tokens where the corrupted prompt differs are noised (marked). Click tokens to choose others.';
    }
    $('#gn-hint').textContent = hint;
  }

  /** What the held spec holds that no control shows, read-only, each with a way to clear it. */
  renderKept() {
    const s = this.spec;
    const d = s.dataset;
    const t = s.target;
    const c = this.component();
    const src = this.source;
    const notes = { '#kept-prompts': [], '#kept-detect': [], '#kept-answers': [], '#kept-corruption': [], '#kept-method': [], '#kept-target': [] };
    const add = (slot, text, clear, label = 'Clear') => notes[slot].push({ text, clear, label });
    const n = s.prompts.length;
    if (!d && n > 1) {
      add('#kept-prompts', `This experiment is a dataset of ${n} prompt pairs${src}: the editor shows and edits the first, and all ${n} run.`, () => (s.prompts = [s.prompts[0]]), 'Keep only the first');
    }
    if (d && n > 0) {
      add('#kept-prompts', `The experiment also lists ${n} prompt pair${n > 1 ? 's' : ''}${src}, which the generated dataset replaces.`, () => {
        this.stash.prompts = s.prompts;
        s.prompts = [];
      }, 'Remove them');
    }
    const named = s.prompts.filter((p) => p.roles?.length);
    if (!d && named.length) {
      add('#kept-prompts', `Roles name the tokens of ${named.length === n ? (n > 1 ? `all ${n} prompts` : 'the prompt') : `${named.length} of the ${n} prompts`}${src} (the first: ${named[0].roles.join(' ')}); prompts of different lengths are aligned by them.`, () => {
        for (const p of s.prompts) delete p.roles;
      });
    }
    if (s.stats) {
      const parts = [
        s.stats.level !== undefined && `a ${numText(s.stats.level)} bootstrap interval`,
        s.stats.resamples !== undefined && `${numText(s.stats.resamples)} resamples`,
        s.stats.permutations !== undefined && `${numText(s.stats.permutations)} random sign flips`,
        s.stats.seed !== undefined && `seed ${numText(s.stats.seed)}`,
      ].filter(Boolean);
      add('#kept-detect', `A dataset's statistics are drawn with ${parts.join(', ')}${src}.`, () => delete s.stats, 'Use the defaults');
    }
    const normalize = s.metric.normalize ?? this.catalog.normalize[0].name;
    if (normalize !== this.catalog.normalize[0].name && $('#normalize-row').hidden) {
      const label = this.catalog.normalize.find((x) => x.name === normalize)?.label ?? normalize;
      add('#kept-method', `Over the prompts: ${label}${src}; with ${s.metric.normalized === false ? 'the metric not normalized' : 'one prompt'} it changes nothing.`, () => delete s.metric.normalize);
    }
    const pair = s.prompts[0];
    if (!d && pair && s.metric.kind !== 'prob_diff' && (pair.answer_set?.length || pair.counter_set?.length)) {
      add('#kept-answers', `Answer sets R = ${(pair.answer_set ?? []).join('|') || 'r'} and R′ = ${(pair.counter_set ?? []).join('|') || 'r′'}${src}: only probability difference reads them.`, () => {
        delete pair.answer_set;
        delete pair.counter_set;
      });
    }
    const gn = this.gn();
    if (gn?.sigma_texts) {
      add('#kept-corruption', `σ is measured on the token embeddings of ${gn.sigma_texts.map(quoted).join(', ')}${src}, not on the noised tokens.`, () => delete gn.sigma_texts);
    }
    if (!c.heads && (t.heads ?? 'each') !== 'each') {
      add('#kept-target', `Heads ${list(t.heads)}${src}: ${t.component} has no heads to choose.`, () => (t.heads = 'each'));
    }
    if (!c.positions && (t.positions ?? 'each') !== 'each') {
      add('#kept-target', `Positions ${list(t.positions)}${src}: path patching does not use them (its receivers name theirs).`, () => (t.positions = 'each'));
    }
    if (t.component !== 'path' && t.receivers !== undefined) {
      add('#kept-target', `Receivers${src}: only path patching has them.`, () => delete t.receivers);
    }
    for (const [slot, items] of Object.entries(notes)) {
      const box = $(slot);
      box.hidden = items.length === 0;
      box.replaceChildren(
        ...items.map(({ text, clear, label }) => {
          const p = el('p', { text: `${text} ` });
          const button = el('button', { text: label, attrs: { type: 'button', 'aria-label': `${label}: ${text}` }, classes: ['small'] });
          button.addEventListener('click', () => this.edit(null, clear));
          p.append(button);
          return p;
        }),
      );
    }
  }

  schedule(delay = 200) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  /**
   * Checks the held spec with the core and shows the first prompt's tokens from that check (a
   * dataset's first generated prompt). When the check fails, or a control holds text that is not
   * yet a spec, the form's pair is tokenized on its own so that its chips still show.
   */
  async refresh() {
    if (!this.modelReady || !this.spec) return;
    const serial = ++this.serial;
    clearErrors();
    const s = this.spec;
    const pair = s.dataset ? null : (s.prompts[0] ?? {});
    const [field, message] = Object.entries(this.invalid)[0] ?? [];
    let error = field ? { field, message } : null;
    const spec = specText(s);
    if (!error) {
      try {
        const check = await this.worker.call('check', { spec });
        if (serial !== this.serial) return;
        this.lastCheck = { spec, check, ok: true };
        const first = check[0];
        const gn = this.gn();
        this.autoPositions = gn && !gn.positions.length ? first.corrupted_positions : [];
        // Under GN the core tokenizes no corrupted prompt; the form still aligns the pair's.
        const corrupted = first.corrupted ?? (pair?.corrupted !== undefined ? await this.tokens(pair.corrupted) : null);
        if (serial !== this.serial) return;
        this.renderTokens(first.clean, corrupted);
      } catch (e) {
        if (serial !== this.serial) return;
        error = e;
      }
    }
    if (error) {
      this.lastCheck = { spec, ok: false, error };
      if (pair) {
        try {
          const clean = await this.tokens(pair.clean ?? '');
          const corrupted = pair.corrupted !== undefined ? await this.tokens(pair.corrupted) : null;
          if (serial !== this.serial) return;
          this.renderTokens(clean, corrupted);
        } catch (e) {
          if (serial === this.serial) showFieldError({ field: 'prompt', message: e.message });
        }
      }
      if (serial !== this.serial) return;
      showFieldError(error);
    }
    this.onChange(this.lastCheck);
  }

  /** The tokens of `text` as the spec's prompts get them (with BOS when the spec prepends it). */
  tokens(text) {
    return this.worker.call('tokenize', { text, bos: this.spec.prepend_bos !== false });
  }

  renderTokens(clean, corrupted) {
    $('#clean-tokens').replaceChildren(
      ...clean.map((t, i) => el('li', { text: t.text, attrs: { title: `position ${i}, id ${t.id}` }, classes: ['chip'] })),
    );
    // The two prompts position by position, differences marked.
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
    // GN: click tokens to noise them; with none chosen, the ones noised are marked.
    const gn = this.gn();
    const chosen = new Set(gn?.positions ?? []);
    const auto = new Set(this.autoPositions);
    $('#gn-tokens').replaceChildren(
      ...clean.map((t, i) => {
        const button = el('button', {
          text: t.text,
          attrs: { type: 'button', 'aria-pressed': String(chosen.has(i)), title: `position ${i}` },
          classes: ['chip', 'toggle', ...(auto.has(i) ? ['auto'] : [])],
        });
        button.addEventListener('click', () =>
          this.edit(null, () => {
            const g = this.gn();
            if (!g) return;
            const set = new Set(g.positions);
            if (set.has(i)) set.delete(i);
            else set.add(i);
            g.positions = [...set].sort((a, b) => a - b);
            this.renderTokens(clean, corrupted);
          }),
        );
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
      const group = el('span', { classes: ['suggestion'] });
      group.append(el('span', { text: `${p.text} (${(100 * p.prob).toFixed(1)}%)`, classes: ['token'] }));
      for (const [label, target] of [['r', '#answer'], ['r′', '#counter']]) {
        const b = el('button', { text: label, attrs: { type: 'button', title: `Use ${p.text} as ${label}` }, classes: ['small'] });
        b.addEventListener('click', () => this.setField(target, p.raw));
        group.append(b);
      }
      box.append(group);
    }
  }
}
