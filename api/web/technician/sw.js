// The technician app's service worker: the app shell is cached so the app opens on a poor
// network; API calls and the socket always go to the network (live data is never cached).
const CACHE = "gasdispatch-technician-v1";
const SHELL = [
  "./", "./index.html", "./app.js", "./manifest.json", "./icon.svg",
  "../shared/app.css", "../shared/api.js", "../shared/i18n.js", "../shared/i18n/zh-CN.js", "../shared/i18n/en.js",
  "../shared/shell.js", "../shared/socket.js", "../shared/ui.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((key) => key !== CACHE).map((key) => caches.delete(key))))
    .then(() => self.clients.claim()));
});

// Network first, the cache when offline: a deploy reaches the phone at the next load.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin || !url.pathname.startsWith("/app/")) return;
  event.respondWith(fetch(event.request)
    .then((response) => {
      const copy = response.clone();
      if (response.ok) caches.open(CACHE).then((cache) => cache.put(event.request, copy));
      return response;
    })
    .catch(() => caches.match(event.request)));
});
