// Specs as JavaScript holds them, without losing anything on the way: JSON numbers beyond
// 2^53 (a u64 seed) stay their exact digits (JSON.rawJSON), so that a spec parsed here and
// written back is the spec that came in. The canonical form of a spec is Rust's (the worker's
// parseSpec): links carry it, and it is what runs.

const BIG = /^-?\d+$/;

/** Parses spec JSON; integers JavaScript cannot hold exactly keep their digits. */
export function parseSpecText(text) {
  return JSON.parse(text, (key, value, context) =>
    typeof value === 'number' && !Number.isSafeInteger(value) && context?.source && BIG.test(context.source)
      ? JSON.rawJSON(context.source)
      : value,
  );
}

/** Writes a spec (or any value parsed by parseSpecText) back as JSON. */
export function specText(spec) {
  return JSON.stringify(spec);
}

/** A deep copy that keeps exact integers. */
export function cloneSpec(spec) {
  return parseSpecText(specText(spec));
}

/** A number field's text: exact integers as their digits. */
export function numText(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'object' && 'rawJSON' in value ? value.rawJSON : String(value);
}

/** A whole number typed in a field, exact beyond 2^53; empty is 0. */
export function intFrom(text) {
  const t = text.trim();
  if (t === '') return 0;
  if (BIG.test(t) && !Number.isSafeInteger(Number(t))) return JSON.rawJSON(t.replace(/^(-?)0+(?=\d)/, '$1'));
  return Number(t);
}

/** Whether two model sources name the same model. */
export function sameModel(a, b) {
  return Boolean(a && b) && JSON.stringify(a) === JSON.stringify(b);
}

/** A model source in words: "patchbay-ioi (ships with the app)", "openai-community/gpt2 (Hub)". */
export function modelName(source) {
  if (!source) return 'no model';
  if (source.embedded !== undefined) return `${source.embedded} (a model that ships with the app)`;
  if (source.hub !== undefined) return `${source.hub} (Hugging Face Hub)`;
  if (source.url !== undefined) return source.url;
  if (source.local !== undefined) return `the local file ${source.local}`;
  return JSON.stringify(source);
}
