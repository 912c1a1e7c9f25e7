// The service worker: after one visit, the page, its lessons, the wasm and the models that ship
// with the app work with no network at all. scripts/build-web.sh writes into PRECACHE every file
// of the build and a version (a hash of them all): a new build installs a new cache and removes
// the old ones. Only this origin's files are served from here; remote models stay in the Cache
// Storage the model worker keeps for them (web/worker.js).

const PRECACHE = { version: 'unbuilt', files: [] };
const CACHE = `patchbay-app-${PRECACHE.version}`;

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(PRECACHE.files.map((file) => new Request(file, { cache: 'reload' })));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) if (key.startsWith('patchbay-app-') && key !== CACHE) await caches.delete(key);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      // The page opens with a query (?backend=cpu, ?model=tiny) and a fragment (links, lessons):
      // any address of the page is the page.
      const hit = await cache.match(request, { ignoreSearch: request.mode === 'navigate' });
      return hit ?? fetch(request);
    })(),
  );
});
