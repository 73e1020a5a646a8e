// Service worker: the page opens with no server after one visit. The server fills in
// ASSET_VERSION (package version + a hash of every file), so each build is a new worker with
// a cache of its own name; older caches are deleted when it takes over.
//
// Online, the page's files come from the network (never a stale page after an upgrade) and
// refresh the cache; with the network down, from the cache. The vendored runtime (versioned
// URLs) is taken from the cache first. The API, /v1/, /metrics and /docs are never touched.

const ASSET_VERSION = "__ASSET_VERSION__";
const CACHE = `audiototext-page-${ASSET_VERSION}`;
const PREFIX = "audiototext-page-"; // kept models (audiototext-model-*) are not the page's
const SCOPE = new URL(self.registration.scope);
const PASS_THROUGH = ["api/", "v1/", "metrics", "docs", "openapi.json", "redoc"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const listing = await fetch(new URL("offline-assets.json", SCOPE), { cache: "no-store" });
      if (!listing.ok) throw new Error(`offline-assets.json: HTTP ${listing.status}`);
      const { files } = await listing.json();
      const cache = await caches.open(CACHE);
      // cache: "reload" skips the HTTP cache, so the copies are this build's files.
      await cache.addAll(files.map((f) => new Request(new URL(f, SCOPE), { cache: "reload" })));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

/** Whether the worker leaves this request to the browser. */
function passThrough(request, url) {
  if (request.method !== "GET" || url.origin !== SCOPE.origin) return true;
  if (!url.pathname.startsWith(SCOPE.pathname)) return true;
  const rest = url.pathname.slice(SCOPE.pathname.length);
  return PASS_THROUGH.some((p) => rest === p || rest.startsWith(p.endsWith("/") ? p : `${p}/`));
}

async function networkFirst(request, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && (await cache.match(key))) await cache.put(key, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(key, { ignoreSearch: true });
    if (cached) return cached;
    throw err;
  }
}

async function cacheFirst(request) {
  const cached = await caches.match(request, { cacheName: CACHE });
  return cached || fetch(request);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (passThrough(request, url)) return;
  if (request.mode === "navigate") {
    // Any address of the page (?transport=..., index.html) opens the page offline.
    const page = SCOPE.pathname.endsWith("/static/") ? "index.html" : "./";
    event.respondWith(networkFirst(request, new URL(page, SCOPE).href));
  } else if (url.pathname.includes("/vendor/")) {
    event.respondWith(cacheFirst(request));
  } else {
    event.respondWith(networkFirst(request, request.url));
  }
});
