// Share links: the spec (and optionally the results) as compressed JSON in the URL's fragment.
// A link carries data only: it is parsed as JSON and checked by the same parser as the CLI's
// specs, never evaluated.

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

async function pack(value) {
  const json = new TextEncoder().encode(JSON.stringify(value));
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
    return JSON.parse(json);
  } catch {
    throw new Error('This link is damaged: its data is not valid JSON.');
  }
}

/** The link for `spec`, with `results` when given. */
export async function makeLink(spec, results) {
  const params = new URLSearchParams();
  params.set('spec', await pack(spec));
  if (results) params.set('results', await pack(results));
  const url = new URL(location.href);
  url.search = '';
  url.hash = params.toString();
  return url.href;
}

/** The spec and results a link carries, if any: `{ spec, results }` (objects, unchecked). */
export async function readLink(hash = location.hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  if (!params.has('spec')) return null;
  const spec = await unpack(params.get('spec'));
  const results = params.has('results') ? await unpack(params.get('results')) : null;
  return { spec, results };
}
