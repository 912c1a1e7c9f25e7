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

async function pack(text) {
  const json = new TextEncoder().encode(text);
  return PREFIX + toBase64Url(await pipe(json, new CompressionStream('deflate-raw')));
}

async function unpack(text) {
  if (!text.startsWith(PREFIX)) {
    const version = text.split('.')[0];
    throw new Error(`This link was made by a newer or unknown Patchbay (link format "${version}"); this page reads "v1" links.`);
  }
  let json;
  try {
    json = new TextDecoder().decode(await pipe(fromBase64Url(text.slice(PREFIX.length)), new DecompressionStream('deflate-raw')));
  } catch {
    throw new Error('This link is damaged: its data could not be decompressed (was it cut short when copied?).');
  }
  try {
    JSON.parse(json);
  } catch {
    throw new Error('This link is damaged: its data is not valid JSON.');
  }
  return json;
}

/** The link for the spec text `spec`, with `results` (an object) when given. */
export async function makeLink(spec, results) {
  const params = new URLSearchParams();
  params.set('spec', await pack(spec));
  if (results) params.set('results', await pack(JSON.stringify(results)));
  const url = new URL(location.href);
  url.search = '';
  url.hash = params.toString();
  return url.href;
}

/**
 * What a link carries, if anything: `{ spec, results, resultsError }`, the spec as the link's
 * JSON text (unchecked), the results as an object. Damaged results do not stop the spec from
 * opening: `resultsError` says what is wrong with them.
 */
export async function readLink(hash = location.hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  if (!params.has('spec')) return null;
  const spec = await unpack(params.get('spec'));
  let results = null;
  let resultsError = null;
  if (params.has('results')) {
    try {
      results = JSON.parse(await unpack(params.get('results')));
    } catch (error) {
      resultsError = error;
    }
  }
  return { spec, results, resultsError };
}

/** Whether a URL fragment carries a link. */
export function isLink(hash = location.hash) {
  return new URLSearchParams(hash.replace(/^#/, '')).has('spec');
}
