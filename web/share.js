// Share links: the spec (and optionally the results) as compressed JSON in the URL's fragment.
// A link carries data only: it is parsed as JSON and checked by the same parser as the CLI's
// specs, never evaluated. The spec goes in as the exact text given (the page gives the
// canonical form, Rust's), and comes out as that text.

const PREFIX = 'v1.';

function toBase64Url(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

function fromBase64Url(text) {
  const b64 = text.replaceAll('-', '+').replaceAll('_', '/');
  const binary = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

async function pipe(bytes, stream) {
  const out = new Response(new Blob([bytes]).stream().pipeThrough(stream));
  return new Uint8Array(await out.arrayBuffer());
}

/** A link part past the core's limit: it was not made by Patchbay. */
class TooLarge extends Error {}

/** `bytes` inflated, stopping as soon as the output passes `cap` bytes. */
async function inflate(bytes, cap) {
  const reader = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw')).getReader();
  const chunks = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > cap) {
      await reader.cancel().catch(() => {});
      throw new TooLarge();
    }
    chunks.push(value);
  }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function mib(bytes) {
  return `${(bytes / (1 << 20)).toLocaleString('en')} MiB`;
}

async function pack(text) {
  const json = new TextEncoder().encode(text);
  return PREFIX + toBase64Url(await pipe(json, new CompressionStream('deflate-raw')));
}

/** The JSON text of one part of a link (`what`: "experiment" or "results"), at most `cap` bytes. */
async function unpack(text, what, cap) {
  if (!text.startsWith(PREFIX)) {
    const version = text.split('.')[0];
    throw new Error(`This link was made by a newer or unknown Patchbay (link format "${version}"); this page reads "v1" links.`);
  }
  let json;
  try {
    json = new TextDecoder().decode(await inflate(fromBase64Url(text.slice(PREFIX.length)), cap));
  } catch (error) {
    if (error instanceof TooLarge) {
      throw new Error(`This link is larger than Patchbay links can be: its ${what} part inflates past ${mib(cap)}, so the page stopped reading it.`);
    }
    throw new Error('This link is damaged: its data could not be decompressed (was it cut short when copied?).');
  }
  try {
    JSON.parse(json);
  } catch {
    throw new Error('This link is damaged: its data is not valid JSON.');
  }
  return json;
}

/**
 * The link for the spec text `spec`, with `results` (an object) when given and within
 * `limits.results_bytes` (the core's, from the catalog), and `digest` (the core's grid digest,
 * JSON text) when given: `{ url, dropped }`, where `dropped` says why results asked for are not
 * in the link.
 */
export async function makeLink(spec, results, limits, digest = null) {
  const params = new URLSearchParams();
  params.set('spec', await pack(spec));
  let dropped = null;
  if (results) {
    const text = JSON.stringify(results);
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > limits.results_bytes) {
      dropped = `The results (${mib(bytes)}) are larger than a link can carry (${mib(limits.results_bytes)}), so the link carries the experiment only.`;
    } else {
      params.set('results', await pack(text));
    }
  }
  if (digest) params.set('digest', await pack(digest));
  const url = new URL(location.href);
  url.search = '';
  url.hash = params.toString();
  return { url: url.href, dropped };
}

/**
 * What a link carries, if anything: `{ spec, results, resultsError, digest, digestError }`, the
 * spec and the grid digest as the link's JSON text (unchecked), the results as an object. Each
 * part is inflated only up to the core's limit for it (`limits`: the catalog's `link`; a digest,
 * a grid's values, no more than results). Damaged or oversized results or digests do not stop
 * the spec from opening: `resultsError` and `digestError` say what is wrong with them.
 */
export async function readLink(limits, hash = location.hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  if (!params.has('spec')) return null;
  const spec = await unpack(params.get('spec'), 'experiment', limits.spec_bytes);
  let results = null;
  let resultsError = null;
  if (params.has('results')) {
    try {
      results = JSON.parse(await unpack(params.get('results'), 'results', limits.results_bytes));
    } catch (error) {
      resultsError = error;
    }
  }
  let digest = null;
  let digestError = null;
  if (params.has('digest')) digest = await unpack(params.get('digest'), 'digest', limits.results_bytes).catch((error) => ((digestError = error), null));
  return { spec, results, resultsError, digest, digestError };
}

/** Whether a URL fragment carries a link. */
export function isLink(hash = location.hash) {
  return new URLSearchParams(hash.replace(/^#/, '')).has('spec');
}
