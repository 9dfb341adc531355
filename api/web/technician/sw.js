// The technician app's service worker: the app shell is cached so the app opens on a poor
// network; API calls and the socket always go to the network (live data is never cached). It
// also shows the Web Push of a new offer, so the offer reaches a locked phone.
import zh from "../shared/i18n/zh-CN.js";
import en from "../shared/i18n/en.js";

const CACHE = "gasdispatch-technician-v2";
const PREFS = "gasdispatch-prefs";  // the language he chose, written by the page
// Every module the page imports: one missing and a reload offline is a blank page
// (tests/dispatch/test_technician_app_shell.py walks the imports and fails on a missing one).
const SHELL = [
  "./", "./index.html", "./app.js", "./manifest.json", "./icon.svg",
  "../shared/app.css", "../shared/api.js", "../shared/i18n.js", "../shared/i18n/zh-CN.js", "../shared/i18n/en.js",
  "../shared/i18n/problems.zh-CN.js", "../shared/i18n/problems.en.js",
  "./onboarding.js", "../shared/shell.js", "../shared/inbox.js", "../shared/signup.js", "../shared/socket.js",
  "../shared/ui.js", "../shared/photos.js", "../shared/outbox.js",
  "../shared/map.js", "../config.js", "../vendor/leaflet/leaflet.js", "../vendor/leaflet/leaflet.css",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((key) => key !== CACHE && key !== PREFS).map((key) => caches.delete(key))))
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
    // The page opened from a notification carries ?offer=…: the cached page serves it too.
    .catch(() => caches.match(event.request, { ignoreSearch: event.request.mode === "navigate" })));
});

// -- offer alerts ---------------------------------------------------------------------------------

const DICTIONARIES = { "zh-CN": zh, en };
const VIBRATION = { emergency: [400, 150, 400, 150, 800], other: [300, 100, 300] };

async function language() {
  const chosen = await caches.open(PREFS).then((cache) => cache.match("lang")).then((r) => r?.text()).catch(() => null);
  return DICTIONARIES[chosen] ? chosen : "zh-CN";
}

function translator(lang) {
  return (key, vars = {}) => (DICTIONARIES[lang][key] ?? zh[key] ?? key)
    .replace(/\{(\w+)\}/g, (_, name) => (vars[name] ?? `{${name}}`));
}

// The server sends slugs only (type, kind, priority, times); the words are the phone's.
self.addEventListener("push", (event) => {
  let offer = null;
  try { offer = event.data?.json(); } catch { /* not ours: ignored */ }
  if (offer?.type !== "offer") return;
  event.waitUntil(language().then((lang) => {
    const t = translator(lang);
    const emergency = offer.priority === "emergency";
    const kind = t(`kind.${offer.kind}`);
    const time = new Date(offer.expires_at).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return self.registration.showNotification(t(emergency ? "push.offer.titleEmergency" : "push.offer.title"), {
      body: t("push.offer.body", { kind: kind.startsWith("kind.") ? offer.kind : kind, time }),
      lang, icon: "icon.svg", badge: "icon.svg",
      tag: `offer:${offer.order_id}`, renotify: true,  // one notice per order, ringing again when offered again
      requireInteraction: emergency, vibrate: emergency ? VIBRATION.emergency : VIBRATION.other,
      data: { order_id: offer.order_id, offer_id: offer.offer_id },
    });
  }));
});

// A tap opens the app on the offer: the open window when there is one, a new one otherwise.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const offerId = event.notification.data?.offer_id ?? "";
  const url = new URL(`./?offer=${encodeURIComponent(offerId)}`, self.registration.scope).href;
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(async (windows) => {
    const open = windows.find((client) => client.url.startsWith(self.registration.scope));
    if (!open) return self.clients.openWindow(url);
    await open.focus();
    open.postMessage({ type: "offer_opened", offer_id: offerId });
  }));
});
