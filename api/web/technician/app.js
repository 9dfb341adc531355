// The technician's phone app: online/offline, the phone's position streamed over the socket,
// offers with a countdown (a sound, a vibration and, through the service worker, a Web Push that
// reaches a locked phone), the current job step by step, his day's planned visits in order (a list
// and a map), completed jobs, his certificates (with the photo of one awaiting review). It survives
// the field: the service worker keeps the app shell, the last answers and his report drafts stay on
// the phone, and steps, reports and photos taken offline wait in the outbox until the connection
// returns (shared/outbox.js).
import { NetworkError } from "../shared/api.js";
import { currentLang, t } from "../shared/i18n.js";
import { createMap, fit, line, numbered } from "../shared/map.js";
import { startApp } from "../shared/shell.js";
import { noticeTitle } from "../shared/inbox.js";
import { LiveSocket } from "../shared/socket.js";
import { createOutbox } from "../shared/outbox.js";
import { photoForUpload } from "../shared/photos.js";
import { loadOnboarding, renderOnboarding } from "./onboarding.js";
import { UserError, act, clockTime, errorText, field, fill, geolocationText, h, isoDay, kindText, minor, money, oneAtATime, reasonText, statusText, toast, when, windowText } from "../shared/ui.js";

const ACTIVE = ["accepted", "en_route", "arrived", "in_service"];
const DONE = ["completed", "reviewed", "settled"];
const HAZARD_CATEGORIES = ["leaking_connector", "aged_hose", "illegal_modification", "no_alarm", "ventilation",
  "corroded_pipe", "appliance_fault", "other"];
const SEVERITIES = ["minor", "major", "critical"];
const RESOLUTIONS = ["needs_followup", "fixed_on_site"];  // the safe choice first
const main = document.getElementById("main");
const statusSlot = document.getElementById("status-slot");
const state = { me: null, offers: new Map(), jobs: [], done: [], notices: [], certs: [], connection: "connecting", lastFix: null, lastSent: null, geoError: null,
  queue: [], replayFailures: [], savedAt: null };  // queue: the outbox's entries; savedAt: the time of the answers shown offline
const drafts = new Map();  // order id -> work report being written, kept across re-renders
let reposition = null;  // the latest repositioning hint, until he dismisses it
let api;
let socket;
let outbox;

// A module worker: it imports the dictionaries to word a push in his language.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("sw.js", { type: "module" }).catch(() => {});
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data?.type === "offer_opened") showOffer(event.data.offer_id);
  });
}
// Opened from an offer's notification: that offer's card is brought into view once it arrives.
let offerToShow = new URLSearchParams(location.search).get("offer");

startApp("technician", ["technician"], {
  boot: async (client) => {
    api = client;
    outbox = createOutbox(api, { onChange: renderQueue, onSent: replayed, onFailed: replayFailed, onDrained: drained });
    await outbox.start();
    await restoreDrafts();
    state.me = await remembered("me", () => api.get("/v1/technicians/me"));
    socket = new LiveSocket(() => api.socketUrl("/v1/ws/technician"), {
      onMessage,
      // 4403: the server refused this account; the socket gives up instead of reconnecting.
      onState: (s, code) => { state.connection = code === 4403 ? "refused" : s; renderHeader(); },
      onOpen: () => { sendFix(); reconnected(); },
    });
    window.addEventListener("online", renderHeader);
    window.addEventListener("offline", renderHeader);
    window.addEventListener("pagehide", saveDrafts);
    watchPosition();
    rememberLanguage();
    if (alertsState() === "granted") subscribePush().catch(() => renderAlerts());  // renews this device's subscription
    document.addEventListener("visibilitychange", renderAlerts);  // permission changed in the settings
    // Back on the phone's screen: the plan may have changed while the app was in the background.
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") loadDay(); });
    document.addEventListener("click", unlockAudio, { once: true });
    await loadJobs();
    await loadDay();
    await loadNotices();
    await loadCerts().catch((error) => toast(errorText(error)));
    if (state.me.onboarding === "applicant") await loadApplicant().catch((error) => toast(errorText(error)));
    setInterval(renderOffers, 1000);  // the countdowns
    setInterval(tickSla, 5000);
  },
  rerender: () => { rememberLanguage(); render(); },
  signUp: "technician",
});

// -- position ---------------------------------------------------------------------------------

function watchPosition() {
  if (!("geolocation" in navigator)) { state.geoError = { code: null }; render(); return; }
  if (state.watch !== undefined) navigator.geolocation.clearWatch(state.watch);
  state.watch = navigator.geolocation.watchPosition((position) => {
    state.lastFix = position;
    state.geoError = null;
    sendFix();
    renderHeader();
  }, (error) => { state.geoError = error; renderHeader(); },
  { enableHighAccuracy: true, maximumAge: 5000 });
}

function sendFix() {
  const fix = state.lastFix;
  // Offline, fixes are not piled up for later (a stale one is worth nothing): the socket sends
  // the latest when it opens again.
  if (!fix || !socket?.open) return;
  const { longitude, latitude, accuracy, heading, speed } = fix.coords;
  const message = { type: "location", lon: longitude, lat: latitude, ts: new Date(fix.timestamp).toISOString() };
  if (Number.isFinite(accuracy)) message.accuracy = Math.min(accuracy, 10000);
  if (Number.isFinite(heading) && heading >= 0 && heading < 360) message.heading = heading;
  if (Number.isFinite(speed) && speed >= 0 && speed <= 100) message.speed = speed;
  socket.request(message).then(() => {
    state.lastSent = { at: new Date(), lat: latitude, lon: longitude };
    renderHeader();
  }).catch((error) => toast(errorText(error)));
}

// -- socket pushes ------------------------------------------------------------------------------

function onMessage(message) {
  if (message.type === "offer") {
    // A reconnect resends the open offers: only a new one rings.
    if (!state.offers.has(message.offer.offer_id)) ring(message.offer.priority);
    state.offers.set(message.offer.offer_id, message.offer);
    renderOffers();
  } else if (message.type === "offer_withdrawn") {
    state.offers.delete(message.offer_id);
    renderOffers();
  } else if (message.type === "eta") {
    // Kept on the job too: a card rebuilt (another language) shows this range, not the one loaded.
    const job = state.jobs.find((o) => o.id === message.order_id);
    if (job) job.eta = message.eta;
    const line = document.querySelector(`[data-order="${message.order_id}"] .job-eta`);
    if (line) line.textContent = etaText(message.eta);
  } else if (message.type === "reposition") {
    reposition = message;
    renderReposition();
  } else if (message.type === "plan_changed") {
    if (message.day === day.date) loadDay();  // his stops of that day re-planned: new order or times
  } else if (message.type === "resync") {
    reloadJobs();
    loadDay();
  } else if (message.type === "job_updated" || message.type === "order_cancelled") {
    if (message.type === "order_cancelled") toast(t("technician.cancelled"));
    reloadJobs();
    loadDay();
  } else if (message.type === "notification" && message.notification?.title) {
    loadDay();  // a booking cancelled, moved or given to him
    toast(noticeTitle(message.notification));  // the server's title is bilingual prose
    if (NOTICE_KINDS.includes(message.notification.kind)) {
      state.notices = [message.notification, ...state.notices.filter((n) => n.id !== message.notification.id)];
      renderNotices();
    }
  }
}

// Job updates in quick succession must not draw an older list last.
const loadJobs = oneAtATime(async () => {
  const [orders, me] = await Promise.all([remembered("orders", () => api.get("/v1/orders?limit=50")),
    remembered("me", () => api.get("/v1/technicians/me"))]);
  state.me = me;
  state.jobs = orders.data.filter((o) => ACTIVE.includes(o.status)).map(withQueuedSteps);
  state.done = orders.data.filter((o) => DONE.includes(o.status));
  if (!state.savedAt) {  // the server's word: drafts of jobs no longer his are dropped
    for (const id of drafts.keys()) if (!state.jobs.some((o) => o.id === id) && !queuedFor(id).length) dropDraft(id);
  }
  render();
});

// After the first load (whose failure the shell shows): a reload that fails says why in a toast.
const reloadJobs = () => loadJobs().catch((error) => toast(errorText(error)));

// -- in the field without a connection -----------------------------------------------------------

// The last answers, kept on the phone (per account): a reload without a connection shows them,
// with their time, instead of a blank page.
const SAVED = "gasdispatch.technician.saved";

async function remembered(name, load) {
  // Read after the answer, not before: loads running side by side must not write back each other's old answers.
  const saved = () => {
    const owner = api.session()?.email;
    const kept = JSON.parse(localStorage.getItem(SAVED) || "null");
    return kept?.owner === owner ? kept : { owner, data: {} };
  };
  try {
    const value = await load();
    const mine = saved();
    mine.data[name] = value;
    mine.at = Date.now();
    localStorage.setItem(SAVED, JSON.stringify(mine));
    state.savedAt = null;
    return value;
  } catch (error) {
    const mine = saved();
    if (!(error instanceof NetworkError) || !(name in mine.data)) throw error;
    state.savedAt = mine.at;
    return mine.data[name];
  }
}

// A step taken offline moves his job on at once; the server hears of it on reconnection.
const STEP_STATUS = { depart: "en_route", arrive: "arrived", start: "in_service" };
const queuedFor = (orderId) => state.queue.filter((entry) => entry.meta.order === orderId);

function withQueuedSteps(order) {
  const steps = queuedFor(order.id).filter((entry) => STEP_STATUS[entry.meta.step]);
  return steps.length ? { ...order, status: STEP_STATUS[steps.at(-1).meta.step] } : order;
}

function renderQueue(entries) {
  state.queue = entries;
  renderOffline();
  for (const card of document.querySelectorAll("article.job")) {
    const waiting = queuedFor(card.dataset.order);
    card.querySelector(".job-queued")?.classList.toggle("hidden", !waiting.some((entry) => entry.meta.step !== "photo"));
    const report = waiting.some((entry) => entry.meta.step === "complete");
    card.querySelector("#report-queued")?.classList.toggle("hidden", !report);
    const submit = card.querySelector("#job-complete");
    if (submit) submit.disabled = report;  // a second report would be refused once the first is in
  }
}

/** The connection is back (the socket opened): what waits is sent, then what is shown is reloaded
 * if it came from the phone. */
async function reconnected() {
  await outbox.flush();
  if (!state.savedAt) return;
  await reloadJobs();
  loadDay();
  loadNotices();
  loadCerts().catch(() => {});
}

function replayed(entry, reply) {
  if (entry.meta.step !== "complete") return;
  if (reply.http_status === 202) {  // the price waits for the customer: submitted again once approved
    const draft = drafts.get(entry.meta.order);
    if (draft) draft.awaitingPrice = true;
    saveDrafts();
    const error = document.querySelector(`[data-order="${entry.meta.order}"] #report-form .error`);
    if (error) error.textContent = t("technician.awaitingPrice");
  } else {
    dropDraft(entry.meta.order);
    toast(t("technician.completedToast"));
  }
}

function replayFailed(entry, error) {
  state.replayFailures.push({ step: entry.meta.step, error });  // worded when drawn: in the language of the moment
  renderOffline();
  reloadJobs();  // the job as the server has it (cancelled, given to another)
}

function drained(sent) {
  toast(t("offline.sent", { n: sent }));
  reloadJobs();
}

function renderOffline() {
  const section = document.getElementById("offline");
  if (!section) return;
  const offline = !navigator.onLine;
  const shown = JSON.stringify([offline, state.queue.length, state.savedAt, state.replayFailures.length, currentLang()]);
  if (section.dataset.shown === shown) return;  // rebuilt only when it changes: a tap on it is kept
  section.dataset.shown = shown;
  const time = state.savedAt && new Date(state.savedAt).toLocaleTimeString(currentLang(), { hour: "2-digit", minute: "2-digit" });
  const dismiss = h("button", { type: "button", id: "offline-dismiss" }, t("offline.dismiss"));
  dismiss.addEventListener("click", () => { state.replayFailures = []; renderOffline(); });
  section.classList.toggle("hidden", !offline && !state.queue.length && !state.savedAt && !state.replayFailures.length);
  fill(section,
    offline ? h("strong", {}, t("offline.title")) : null,
    offline ? h("p", { id: "offline-text" }, t("offline.text")) : null,
    state.queue.length ? h("p", { id: "offline-pending" }, t("offline.pending", { n: state.queue.length })) : null,
    time ? h("p", { class: "muted", id: "offline-saved" }, t("offline.snapshot", { time })) : null,
    state.replayFailures.length ? h("ul", { class: "plain", id: "offline-failures" },
      state.replayFailures.map(({ step, error }) => h("li", { class: "error" },
        t("offline.failed", { action: t(`offline.step.${step}`), reason: errorText(error) })))) : null,
    state.replayFailures.length ? h("div", { class: "actions" }, dismiss) : null);
}

// Drafts of work reports, kept on the phone (per account) with their photos' images: a reload, a
// crash or a signed-out session mid-job loses nothing he wrote.
const DRAFTS = "gasdispatch.technician.drafts";
const draftRefs = (d) => [...d.photos, ...d.hazardPhotos, ...d.fixPhotos,
  ...d.hazards.flatMap((z) => [...z.photo_refs, ...(z.fix?.photo_refs ?? [])])];

function saveDrafts() {
  if (!api?.session()) return;
  const kept = Object.fromEntries([...drafts].map(([id, { photoUrls, ...draft }]) => [id, draft]));
  localStorage.setItem(DRAFTS, JSON.stringify({ owner: api.session().email, drafts: kept }));
}

async function restoreDrafts() {
  const saved = JSON.parse(localStorage.getItem(DRAFTS) || "null");
  if (!saved || saved.owner !== api.session()?.email) return;
  for (const [id, draft] of Object.entries(saved.drafts)) {
    draft.photoUrls = {};
    for (const ref of draftRefs(draft)) {
      const blob = await outbox.photoBlob(ref).catch(() => undefined);
      if (blob) draft.photoUrls[ref] = URL.createObjectURL(blob);
    }
    drafts.set(id, draft);
  }
}

function dropDraft(orderId) {
  const draft = drafts.get(orderId);
  drafts.delete(orderId);
  saveDrafts();
  if (draft) outbox.forgetPhotos(draftRefs(draft)).catch(() => {});
}

// -- notices: a job taken away or a price refused, and why --------------------------------------

const NOTICE_KINDS = ["job_cancelled", "job_released", "job_reassigned", "price_change_rejected", "message"];

async function loadNotices() {
  const unread = await api.get("/v1/notifications?unread=true&limit=20").catch(() => ({ data: [] }));
  state.notices = unread.data.filter((n) => NOTICE_KINDS.includes(n.kind));
  renderNotices();
}

// A reason chosen from the list arrives as a slug, shown in his language; operations' free text as written.
function noticeReason(p) {
  return p.reason_code ? t(`cancelReason.${p.reason_code}`) : p.reason ? reasonText(p.reason) : "";
}

function renderNotices() {
  const section = document.getElementById("notices");
  if (!section) return;
  section.classList.toggle("hidden", !state.notices.length);
  fill(section, h("h2", {}, t("notice.title")), h("ul", { class: "plain", id: "notice-list" }, state.notices.map((n) => {
    const p = n.payload ?? {};
    const seen = h("button", { type: "button" }, t("notice.dismiss"));
    seen.addEventListener("click", async () => {
      await api.post(`/v1/notifications/${n.id}/read`, {}).catch((error) => toast(errorText(error)));
      state.notices = state.notices.filter((x) => x.id !== n.id);
      renderNotices();
    });
    const reason = noticeReason(p);
    return h("li", { class: "notice", "data-kind": n.kind },
      h("strong", {}, t(`notice.${n.kind}`, { order: String(p.order_id ?? "").slice(0, 8),
        amount: p.amount_minor != null ? money({ amount_minor: p.amount_minor, currency: p.currency }) : "" })),
      p.action && n.kind !== "price_change_rejected" ? h("div", {}, t(`notice.action.${p.action}`)) : null,
      reason ? h("div", { class: "notice-reason" }, t("notice.reason", { reason })) : null,
      p.compensation ? h("div", {}, t("notice.compensation", { amount: money(p.compensation) })) : null,
      n.kind === "message" ? h("p", { class: "notice-text" }, n.body) : null,  // an operator's words, as written
      h("div", { class: "muted" }, when(n.created_at), " ", seen));
  })));
}

// -- rendering ------------------------------------------------------------------------------------

function render() {
  renderHeader();
  if (!document.getElementById("offers")) {
    fill(main, 
      h("section", { class: "notice hidden", id: "offline", role: "status", "aria-live": "polite" }),
      h("section", { class: "notice hidden", id: "alerts", role: "alert" }),
      h("section", { class: "card hidden", id: "onboarding", "aria-labelledby": "onboarding-h" }),
      h("section", { class: "card", id: "availability" }),
      h("section", { class: "notice hidden", id: "reposition", role: "status" }),
      h("section", { class: "card hidden", id: "notices", "aria-live": "assertive" }),
      h("section", { class: "card", id: "offers", "aria-live": "assertive" }),
      h("section", { id: "jobs" }),
      h("section", { class: "card", id: "my-day", "aria-labelledby": "my-day-h" }),
      h("section", { class: "card", id: "done" }),
      h("section", { class: "card", id: "earnings", "aria-labelledby": "earnings-h" }),
      h("section", { class: "card", id: "my-certs", "aria-labelledby": "my-certs-h" }));
  }
  renderAlerts();
  renderAvailability();
  renderReposition();
  renderNotices();
  renderOffers();
  renderJobs();
  renderQueue(state.queue);  // what waits to be sent, on the cards just drawn
  renderDay();
  renderDone();
  renderEarnings();
  renderCerts();
  drawOnboarding();
}

function renderHeader() {
  const status = state.me?.status ?? "offline";
  const connection = navigator.onLine ? state.connection : "offline";  // the phone knows before the socket does
  fill(statusSlot, 
    h("span", { class: `pill ${status}`, id: "tech-status" }, t(`tech.${status}`)), " ",
    h("span", { class: `pill ${connection === "open" ? "ok" : "warn"}`, id: "connection" },
      t(`technician.connection.${connection}`)));
  renderOffline();
  const gps = document.getElementById("gps");
  if (!gps) return;
  gps.classList.toggle("geo-error", Boolean(state.geoError));
  gps.textContent = state.geoError ? geolocationText(state.geoError)
    : state.lastFix ? t("technician.gpsOk", { acc: Math.round(state.lastFix.coords.accuracy || 0) }) : t("technician.gpsWaiting");
  if (state.lastSent) {
    gps.textContent += ` · ${t("technician.gpsSent", { time: state.lastSent.at.toLocaleTimeString() })}`;
    gps.dataset.sent = `${state.lastSent.lat.toFixed(5)},${state.lastSent.lon.toFixed(5)}`;
  }
}

function renderAvailability() {
  const section = document.getElementById("availability");
  const online = state.me.status !== "offline";
  const error = h("p", { class: "error", role: "alert" });
  const toggle = h("button", { type: "button", class: online ? "danger" : "primary", id: "toggle-online" },
    t(online ? "technician.goOffline" : "technician.goOnline"));
  toggle.addEventListener("click", async () => {
    const reply = await act(toggle, error, () => online ? socket.request({ type: "go_offline" }) : goOnline());
    if (reply) { state.me.status = reply.status; sendFix(); render(); }
  });
  const retrying = state.onlineRetry
    ? h("p", { class: "warn", id: "online-retry", "aria-live": "polite" },
      t("technician.onlineRetrying", { attempt: state.onlineRetry.attempt, max: ONLINE_MAX_TRIES }))
    : null;
  fill(section, h("h2", {}, state.me.name), h("p", { class: "muted", id: "gps", "aria-live": "polite" }),
    error, retrying, h("div", { class: "actions" }, toggle));
  renderHeader();
}

// Going online fails while the server cannot reach Redis or its database: tried again with a
// growing pause (1 s doubling to 30 s, ONLINE_MAX_TRIES in all), shown on the page meanwhile.
const ONLINE_RETRYABLE = ["service-unavailable", "internal-error", "throttled"];
const ONLINE_MAX_TRIES = 8;

async function goOnline() {
  if (!navigator.onLine) throw new NetworkError("offline");  // the request would wait for the network
  await locationAllowed();
  let pause = 1000;
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        return await socket.request({ type: "go_online" });
      } catch (error) {
        if (attempt >= ONLINE_MAX_TRIES || !ONLINE_RETRYABLE.includes(error.reply?.code)) throw error;
        state.onlineRetry = { attempt };
        renderAvailability();
        await new Promise((resolve) => setTimeout(resolve, pause * (0.75 + Math.random() / 2)));
        pause = Math.min(pause * 2, 30000);
      }
    }
  } finally {
    state.onlineRetry = null;
  }
}

// Offers follow his position: online without location access he would never be offered a job.
async function locationAllowed() {
  const refused = () => new UserError(t("technician.onlineNeedsLocation"));
  if (!("geolocation" in navigator)) throw refused();
  const permission = await navigator.permissions?.query({ name: "geolocation" }).then((p) => p.state, () => null);
  if (permission === "denied") throw refused();
  const watchRefused = state.geoError?.code === GeolocationPositionError.PERMISSION_DENIED;
  if (permission === "granted" && !watchRefused) return;
  // Not decided yet, or allowed in the settings since the watch was refused: asked now.
  try {
    state.lastFix = await new Promise((resolve, reject) =>
      navigator.geolocation.getCurrentPosition(resolve, reject, { timeout: 15000, maximumAge: 60000 }));
    state.geoError = null;
  } catch (error) {
    if (error.code === GeolocationPositionError.PERMISSION_DENIED) throw refused();
  }
  if (watchRefused) watchPosition();  // a refused watch ends: started again now that it is allowed
}

function renderOffers() {
  const section = document.getElementById("offers");
  if (!section) return;
  const now = Date.now();
  for (const [id, offer] of state.offers) if (Date.parse(offer.expires_at) <= now) state.offers.delete(id);
  section.classList.toggle("hidden", state.offers.size === 0);
  // Rebuilding the buttons every second would steal focus: only the countdowns tick.
  const shown = [...section.querySelectorAll("[data-offer]")].map((el) => el.dataset.offer).join();
  if (shown === [...state.offers.keys()].join()) {
    for (const el of section.querySelectorAll("[data-countdown]")) {
      el.textContent = t("technician.countdown", { s: Math.max(0, Math.round((Date.parse(el.dataset.countdown) - now) / 1000)) });
    }
    return;
  }
  fill(section, h("h2", {}, t("technician.newOffer")), [...state.offers.values()].map((offer) => {
    const error = h("p", { class: "error", role: "alert" });
    const accept = h("button", { type: "button", class: "ok", id: `accept-${offer.offer_id}` }, t("technician.accept"));
    const decline = h("button", { type: "button", id: `decline-${offer.offer_id}` }, t("technician.decline"));
    accept.addEventListener("click", async () => {
      const reply = await act(accept, error, () => socket.request({ type: "accept_offer", offer_id: offer.offer_id }));
      if (reply) { state.offers.delete(offer.offer_id); toast(t("technician.accepted")); reloadJobs(); }
    });
    decline.addEventListener("click", async () => {
      const reply = await act(decline, error, () => socket.request({ type: "decline_offer", offer_id: offer.offer_id }));
      if (reply) { state.offers.delete(offer.offer_id); renderOffers(); }
    });
    return h("article", { class: "offer", dataset: { offer: offer.offer_id } },
      h("h3", {}, kindText(offer.kind), " ", h("span", { class: `pill ${offer.priority}` }, t(`priority.${offer.priority}`))),
      h("p", { class: "offer-facts" }, `${t("technician.distance")} ${(offer.distance_m / 1000).toFixed(1)} km · ${t("technician.eta")} ${offer.eta_min} min`),
      offerArea(offer),
      offer.description ? h("p", {}, offer.description) : null,
      h("p", {}, slaClock(offer.sla_deadline)),
      h("p", { class: "pill warn", dataset: { countdown: offer.expires_at } },
        t("technician.countdown", { s: Math.max(0, Math.round((Date.parse(offer.expires_at) - now) / 1000)) })),
      error, h("div", { class: "actions" }, accept, decline));
  }));
  if (offerToShow) showOffer(offerToShow);
}

// An offer names its district and street, enough to judge the trip; the door comes with acceptance.
// Until they arrive (or for an address saved as one line) the area's rounded point stands.
function offerArea(offer) {
  const [lon, lat] = offer.area.coordinates;
  const area = h("p", { class: "muted offer-area" }, `${t("technician.area")}: ${lat.toFixed(3)}, ${lon.toFixed(3)}`);
  api.get(`/v1/jobs/${offer.order_id}/address`).then((place) => {
    if (place.district) area.textContent = `${t("technician.area")}: ${[place.district, place.street].filter(Boolean).join(" · ")}`;
  }).catch(() => {});  // offline or already taken: the rounded point stays
  return area;
}

function showOffer(offerId) {
  const accept = document.getElementById(`accept-${offerId}`);
  offerToShow = accept ? null : offerId;
  if (accept) { accept.scrollIntoView({ block: "center" }); accept.focus(); }
}

// -- alerts: an offer must wake him --------------------------------------------------------------

let audio = null;  // created on his first tap: browsers keep sound muted until the page is touched

function unlockAudio() {
  try {
    audio ??= new AudioContext();
    audio.resume();
  } catch { audio = null; }
}

const VIBRATION = { emergency: [400, 150, 400, 150, 800], other: [300, 100, 300] };

/** A short beep pattern (oscillator, no sound file) and a vibration; three beeps for an emergency. */
function ring(priority) {
  const emergency = priority === "emergency";
  navigator.vibrate?.(emergency ? VIBRATION.emergency : VIBRATION.other);
  try {
    audio ??= new AudioContext();
    for (let i = 0; i < (emergency ? 3 : 2); i++) {
      const start = audio.currentTime + i * 0.35;
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.type = "square";
      tone.frequency.value = emergency ? 988 : 880;
      gain.gain.setValueAtTime(0.2, start);
      gain.gain.setValueAtTime(0, start + 0.22);
      tone.connect(gain).connect(audio.destination);
      tone.start(start);
      tone.stop(start + 0.25);
    }
  } catch { /* no audio here: the vibration and the card remain */ }
}

function alertsState() {
  if (!("Notification" in window) || !("serviceWorker" in navigator) || !("PushManager" in window)) return "unsupported";
  return Notification.permission;
}

// The service worker words a push in the language he chose: it reads it from this cache entry.
function rememberLanguage() {
  if ("caches" in window) caches.open("gasdispatch-prefs").then((cache) => cache.put("lang", new Response(currentLang()))).catch(() => {});
}

async function subscribePush() {
  const registration = await navigator.serviceWorker.ready;
  const { public_key: key } = await api.get("/v1/push/vapid-public-key");
  let subscription = await registration.pushManager.getSubscription();
  const current = subscription?.options.applicationServerKey;
  if (subscription && current && base64url(current) !== key) {  // the install's key changed
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  await api.post("/v1/me/push-subscriptions", subscription.toJSON());
}

function base64url(buffer) {
  return btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** "Alerts off" while notifications are not granted: offers would not reach a locked phone. */
function renderAlerts() {
  const section = document.getElementById("alerts");
  if (!section) return;
  const permission = alertsState();
  section.classList.toggle("hidden", permission === "granted");
  // Rebuilt only when it changes: a button replaced under his finger would lose the tap.
  const shown = `${permission}:${currentLang()}`;
  if (permission === "granted" || section.dataset.shown === shown) return;
  section.dataset.shown = shown;
  const error = h("p", { class: "error", role: "alert" });
  let enable = null;
  if (permission === "default") {
    enable = h("button", { type: "button", class: "primary", id: "alerts-enable" }, t("alerts.enable"));
    enable.addEventListener("click", async () => {
      unlockAudio();
      if (await Notification.requestPermission() === "granted") await act(enable, error, subscribePush);
      if (!error.textContent) renderAlerts();
    });
  }
  fill(section, h("h2", {}, t("alerts.title")),
    h("p", { id: "alerts-text" }, t(`alerts.${permission}`)), error,
    enable ? h("div", { class: "actions" }, enable) : null);
}

const cards = new Map();  // order id -> {status, lang, element}: a card is rebuilt only when its job moves on

function renderJobs() {
  const lang = document.documentElement.lang;
  const elements = state.jobs.map((order) => {
    const kept = cards.get(order.id);
    if (kept && kept.status === order.status && kept.lang === lang) {
      // The arrival range moves while the status stays: a reload (a resync) brings the current one.
      kept.element.querySelector(".job-eta").textContent = etaText(order.eta);
      return kept.element;
    }
    const element = jobCard(order);
    cards.set(order.id, { status: order.status, lang, element });
    return element;
  });
  // Re-inserting an unchanged card detaches it for a moment: a tap or a submit in flight
  // on it is lost, so the list is only touched when it changed.
  const container = document.getElementById("jobs");
  const current = Array.from(container.children);
  if (current.length !== elements.length || current.some((el, i) => el !== elements[i])) fill(container, elements);
}

function jobCard(order) {
  const error = h("p", { class: "error", role: "alert" });
  const step = (label, path, id, cls = "primary") => {
    const button = h("button", { type: "button", class: cls, id }, t(label));
    button.addEventListener("click", async () => {
      const reply = await act(button, error, () => outbox.send(`/v1/jobs/${order.id}/${path}`, {}, { order: order.id, step: path }));
      if (reply?.queued) toast(t("offline.queued"));
      if (reply) reloadJobs();
    });
    return button;
  };
  const body = [];
  if (order.status === "accepted") body.push(h("div", { class: "actions" }, step("technician.depart", "depart", "job-depart")));
  if (order.status === "en_route") body.push(verifyForm(order), h("div", { class: "actions" }, step("technician.arrive", "arrive", "job-arrive")));
  if (order.status === "arrived") body.push(h("div", { class: "actions" }, step("technician.start", "start", "job-start")));
  if (order.status === "in_service") body.push(reportForm(order));
  return h("article", { class: "card job", dataset: { order: order.id } },
    h("h2", {}, `${t("technician.currentJob")}: ${kindText(order.kind)} `, h("span", { class: "pill", id: "job-status" }, statusText(order.status)),
      " ", h("span", { class: "pill warn hidden job-queued" }, t("offline.queuedStep"))),
    order.description ? h("p", {}, order.description) : null,
    jobPlace(order),
    h("p", { class: "muted" }, `${t("customer.estimate")} ${money(order.price_estimate)}`),
    h("p", { class: "job-sla" }, slaClock(order.sla_deadline)),
    h("p", { class: "job-eta", "aria-live": "polite" }, etaText(order.eta)),
    body, error);
}

// The job's address, the customer's name, a call through the utility's relay (neither number is
// shown) and routes in the four map apps, fetched apart: the job list does not carry them. Offline,
// the coordinates stand in.
function jobPlace(order) {
  const [lon, lat] = order.location.coordinates;
  const box = h("div", { class: "job-address" },
    h("p", { class: "muted" }, `${t("technician.address")}: ${lat.toFixed(5)}, ${lon.toFixed(5)}`));
  api.get(`/v1/jobs/${order.id}/address`).then((place) => {
    const error = h("p", { class: "error", role: "alert" });
    const call = h("button", { type: "button", id: "job-contact" }, t("technician.contact"));
    call.addEventListener("click", async () => {
      if (await act(call, error, () => api.post(`/v1/jobs/${order.id}/contact`))) toast(t("technician.contactRequested"));
    });
    // https links: each opens its app where installed, its web page elsewhere.
    const links = Object.entries(place.navigation).map(([app, href]) =>
      h("a", { class: "button", id: `nav-${app}`, href, target: "_blank", rel: "noopener noreferrer" }, t(`technician.nav.${app}`)));
    fill(box, h("p", { id: "job-address" }, h("strong", {}, `${t("technician.address")}: `), place.line),
      h("p", { id: "job-customer" }, `${t("technician.customerName")}: ${place.customer_name}`),
      h("div", { class: "actions" }, call), error,
      h("p", { class: "muted" }, t("technician.navigateWith")), h("div", { class: "actions" }, links));
  }).catch(() => {});  // offline: the coordinates stay
  return box;
}

// The arrival range the customer sees too, from acceptance until check-in.
function etaText(eta) {
  const clock = (iso) => new Intl.DateTimeFormat(document.documentElement.lang, { timeStyle: "short" }).format(new Date(iso));
  return eta ? t("eta.range", { from: clock(eta.earliest), to: clock(eta.latest) }) : "";
}

// The order's SLA deadline as minutes left (or past it); urgent under 10 minutes. tickSla()
// rewrites only the text and colour, so a job card is not rebuilt for it.
const SLA_URGENT_MS = 10 * 60_000;

function slaClock(deadline) {
  return showSla(h("span", { class: "pill", dataset: { sla: deadline } }), Date.now());
}

function showSla(el, now) {
  const left = Date.parse(el.dataset.sla) - now;
  const minutes = Math.floor(left / 60_000);
  // A routine job's two days read as hours, not 2879 minutes.
  el.textContent = left < 0 ? t("technician.slaOver", { min: Math.ceil(-left / 60_000) })
    : minutes >= 120 ? t("technician.slaLeftHours", { h: Math.floor(minutes / 60) })
    : t("technician.slaLeft", { min: minutes });
  el.classList.toggle("bad", left < SLA_URGENT_MS);
  return el;
}

function tickSla() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-sla]")) showSla(el, now);
}

// A hint to move while free: towards an area short of emergency cover (the station by name, the
// push carries it) or towards a nearby cell where more work is expected; a link to the phone's map
// app for the point, as the page has no map of its own.
function renderReposition() {
  const section = document.getElementById("reposition");
  if (!section) return;
  section.classList.toggle("hidden", !reposition);
  if (!reposition) { fill(section); return; }
  const [lon, lat] = reposition.area.coordinates;
  const dismiss = h("button", { type: "button", id: "reposition-dismiss" }, t("reposition.dismiss"));
  dismiss.addEventListener("click", () => { reposition = null; renderReposition(); });
  const demand = reposition.reason === "demand";
  section.dataset.reason = demand ? "demand" : "emergency_cover";
  if (demand) delete section.dataset.station; else section.dataset.station = reposition.station_id;
  fill(section, h("strong", {}, t(demand ? "reposition.demandTitle" : "reposition.title")),
    h("p", { id: "reposition-text" }, demand
      ? t("reposition.demandText", { km: (reposition.distance_m / 1000).toFixed(1) })
      : t("reposition.text", { station: reposition.station_name })),
    h("div", { class: "actions" }, h("a", { class: "button", id: "reposition-navigate", href: `geo:${lat},${lon}?q=${lat},${lon}` },
      t("reposition.navigate")), dismiss));
}

function verifyForm(order) {
  const code = h("input", { inputmode: "numeric", pattern: "[0-9]{6}", maxlength: 6, autocomplete: "one-time-code", required: true });
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary", id: "verify-code" }, t("technician.verify"));
  const form = h("form", { id: "verify-form" }, h("h3", {}, t("technician.doorCheck")),
    h("p", { class: "muted" }, t("technician.doorCheckHint")), field("door-code-input", "technician.customerCode", code),
    error, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await act(submit, error, () => api.post(`/v1/jobs/${order.id}/verify-code`, { code: code.value.trim() }))) {
      fill(form, h("p", { class: "pill ok", id: "verify-ok" }, t("technician.verified")));
    }
  });
  return form;
}

function reportForm(order) {
  // photos: the work's refs; hazardPhotos, fixPhotos, fixParts: those of the hazard being written.
  const draft = drafts.get(order.id) ?? { parts: [], hazards: [], photos: [], photoUrls: {}, hazardPhotos: [], fixPhotos: [], fixParts: [] };
  drafts.set(order.id, draft);
  const workDone = h("textarea", { required: true, maxlength: 2000, value: draft.workDone ?? "",
    oninput: (event) => { draft.workDone = event.target.value; } });
  const price = h("input", { type: "number", min: 0, step: "0.01", inputmode: "decimal", required: true,
    value: draft.price ?? (order.price_estimate.amount_minor / 100).toFixed(2),
    oninput: (event) => { draft.price = event.target.value; } });
  const valve = h("input", { type: "checkbox", id: "valve-closed", checked: Boolean(draft.valveClosed),
    onchange: (event) => { draft.valveClosed = event.target.checked; } });
  const partsList = h("ul", { id: "parts-list" });
  const hazardsList = h("ul", { id: "hazards-list" });
  const fixPartsList = h("ul", { id: "fix-parts-list" });
  const drawLists = () => {
    fill(partsList, ...draft.parts.map((p) => h("li", {}, `${p.name} × ${p.quantity} · ${money({ amount_minor: p.unit_price_minor, currency: order.price_estimate.currency })}`)));
    fill(hazardsList, ...draft.hazards.map((z) => h("li", {}, `${t(`hazard.${z.category}`)} · ${t(`severity.${z.severity}`)} · ${t(`hazardResolution.${z.resolution}`)}`
      + `${z.description ? ` · ${z.description}` : ""}${z.fix ? ` · ${z.fix.work_done}` : ""}`
      + `${z.fix?.parts.length ? ` · ${z.fix.parts.map((p) => `${p.name} × ${p.quantity}`).join(", ")}` : ""}`,
    photoThumbs(draft, [...z.photo_refs, ...(z.fix?.photo_refs ?? [])]))));
    fill(fixPartsList, ...draft.fixParts.map((p) => h("li", {}, `${p.name} × ${p.quantity} · ${money({ amount_minor: p.unit_price_minor, currency: order.price_estimate.currency })}`)));
  };
  drawLists();

  const partName = h("input", { maxlength: 100 });
  const partQty = h("input", { type: "number", min: 1, value: "1", inputmode: "numeric" });
  const partPrice = h("input", { type: "number", min: 0, step: "0.01", inputmode: "decimal" });
  const addPart = h("button", { type: "button", id: "add-part" }, t("technician.addPart"));
  addPart.addEventListener("click", () => {
    if (!partName.value.trim()) return;
    draft.parts.push({ name: partName.value.trim(), quantity: Number(partQty.value) || 1, unit_price_minor: minor(partPrice.value || 0) });
    partName.value = ""; partPrice.value = "";
    drawLists();
  });

  const category = h("select", {}, HAZARD_CATEGORIES.map((c) => new Option(t(`hazard.${c}`), c)));
  const severity = h("select", {}, SEVERITIES.map((s) => new Option(t(`severity.${s}`), s)));
  const hazardText = h("input", { maxlength: 1000 });
  // Fixed on site: what was done and the parts go with the hazard, and no follow-up order is made.
  const resolution = h("select", {}, RESOLUTIONS.map((r) => new Option(t(`hazardResolution.${r}`), r)));
  const fixText = h("textarea", { maxlength: 2000 });
  const fixPartName = h("input", { maxlength: 100 });
  const fixPartQty = h("input", { type: "number", min: 1, value: "1", inputmode: "numeric" });
  const fixPartPrice = h("input", { type: "number", min: 0, step: "0.01", inputmode: "decimal" });
  const typedFixPart = () => (fixPartName.value.trim()
    ? { name: fixPartName.value.trim(), quantity: Number(fixPartQty.value) || 1, unit_price_minor: minor(fixPartPrice.value || 0) } : null);
  const addFixPart = h("button", { type: "button", id: "add-fix-part" }, t("technician.addFixPart"));
  addFixPart.addEventListener("click", () => {
    const part = typedFixPart();
    if (!part) return;
    draft.fixParts.push(part);
    fixPartName.value = ""; fixPartPrice.value = ""; fixPartQty.value = "1";
    drawLists();
  });
  const [workPhotos] = photoPicker(order, draft, "work-photo", "technician.workPhotos", draft.photos);
  const [hazardPhotos, drawHazardPhotos] = photoPicker(order, draft, "hazard-photo", "technician.hazardPhotos", draft.hazardPhotos);
  const [fixPhotos, drawFixPhotos] = photoPicker(order, draft, "hazard-fix-photo", "technician.fixPhotos", draft.fixPhotos);
  const fixFields = h("div", { class: "hidden", id: "hazard-fix" }, field("hazard-fix-text", "technician.fixDone", fixText),
    fixPartsList,
    h("div", { class: "row" }, h("div", {}, field("hazard-fix-part", "technician.fixPart", fixPartName)),
      h("div", {}, field("hazard-fix-qty", "technician.quantity", fixPartQty)),
      h("div", {}, field("hazard-fix-price", "technician.unitPrice", fixPartPrice))),
    h("div", { class: "actions" }, addFixPart), fixPhotos);
  resolution.addEventListener("change", () => fixFields.classList.toggle("hidden", resolution.value !== "fixed_on_site"));
  const addHazard = h("button", { type: "button", id: "add-hazard" }, t("technician.addHazard"));
  addHazard.addEventListener("click", () => {
    const fixed = resolution.value === "fixed_on_site";
    if (fixed && !fixText.value.trim()) { error.textContent = t("technician.fixDoneMissing"); fixText.focus(); return; }
    const hazard = { category: category.value, severity: severity.value, description: hazardText.value.trim(),
      resolution: resolution.value, photo_refs: draft.hazardPhotos.splice(0) };
    if (fixed) {
      // A part typed but not added yet counts too.
      hazard.fix = { work_done: fixText.value.trim(), parts: [...draft.fixParts.splice(0), typedFixPart()].filter(Boolean),
        photo_refs: draft.fixPhotos.splice(0) };
    }
    draft.hazards.push(hazard);
    hazardText.value = ""; fixText.value = ""; fixPartName.value = ""; fixPartPrice.value = ""; fixPartQty.value = "1"; error.textContent = "";
    drawLists(); drawHazardPhotos(); drawFixPhotos();
  });
  // A follow-up job rectifies the hazard it was made for: reported fixed unless unticked.
  const rectified = h("input", { type: "checkbox", id: "hazard-rectified", checked: true });
  const rectifies = h("fieldset", { class: "hidden", id: "rectifies" });
  if (order.source === "followup") {
    api.get(`/v1/orders/${order.id}/visit`).then((visit) => {
      const hazard = visit.followup_for;
      if (!hazard || hazard.status !== "open") return;
      draft.rectifies = hazard.id;
      rectifies.classList.remove("hidden");
      fill(rectifies, h("legend", {}, t("technician.rectifies")),
        h("p", {}, `${t(`hazard.${hazard.category}`)} · ${t(`severity.${hazard.severity}`)}${hazard.description ? ` · ${hazard.description}` : ""}`),
        h("label", { class: "inline", for: "hazard-rectified" }, rectified, t("technician.rectified")));
    }).catch((e) => toast(errorText(e)));
  }

  const error = h("p", { class: "error", role: "alert" }, draft.awaitingPrice ? t("technician.awaitingPrice") : "");
  const submit = h("button", { type: "submit", class: "primary", id: "job-complete" }, t("technician.complete"));
  const form = h("form", { id: "report-form" }, h("h3", {}, t("technician.report")),
    field("work-done", "technician.workDone", workDone), workPhotos,
    h("fieldset", {}, h("legend", {}, t("technician.parts")), partsList,
      h("div", { class: "row" }, h("div", {}, field("part-name", "technician.partName", partName)),
        h("div", {}, field("part-qty", "technician.quantity", partQty)), h("div", {}, field("part-price", "technician.unitPrice", partPrice))),
      h("div", { class: "actions" }, addPart)),
    rectifies,
    h("fieldset", {}, h("legend", {}, t("customer.hazards")), hazardsList,
      h("div", { class: "row" }, h("div", {}, field("hazard-category", "technician.hazardCategory", category)),
        h("div", {}, field("hazard-severity", "technician.severity", severity))),
      field("hazard-text", "technician.hazardText", hazardText), hazardPhotos,
      field("hazard-resolution", "technician.hazardResolution", resolution), fixFields,
      h("div", { class: "actions" }, addHazard)),
    field("final-price", "technician.finalPrice", price),
    h("label", { class: "inline", for: "valve-closed" }, valve, t("technician.valveClosed")),
    error, h("p", { class: "pill warn hidden", id: "report-queued", role: "status" }, t("offline.reportQueued")),
    h("div", { class: "actions" }, submit));
  // Every change is kept on the phone (the handlers above change the draft on a click or an input).
  for (const type of ["input", "change", "click"]) form.addEventListener(type, () => setTimeout(saveDrafts));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await act(submit, error, () => outbox.send(`/v1/jobs/${order.id}/complete`, {
      work_done: workDone.value, parts: draft.parts, photo_refs: draft.photos, hazards: draft.hazards, final_price_minor: minor(price.value),
      fixed_hazard_ids: draft.rectifies && rectified.checked ? [draft.rectifies] : [],
      currency: order.price_estimate.currency, valve_closed: valve.checked }, { order: order.id, step: "complete" }));
    if (!result) return;
    if (result.queued) {  // kept, with the draft, until the server has it (replayed())
      toast(t("offline.queued"));
      renderQueue(state.queue);
    } else if (result.http_status === 202) {
      draft.awaitingPrice = true;  // submitted again once the customer approves
      // The job view may have been redrawn while the request was out: write to the live form.
      (document.querySelector("#report-form .error") || error).textContent = t("technician.awaitingPrice");
    } else {
      dropDraft(order.id);
      toast(t("technician.completedToast"));
      reloadJobs();
    }
  });
  return form;
}

/** The thumbnails of photos he attached, from the images on the phone. */
function photoThumbs(draft, refs) {
  return refs.length ? h("div", { class: "photo-thumbs" }, refs.map((ref, i) =>
    h("img", { src: draft.photoUrls[ref], alt: t("photo.nth", { n: i + 1 }), class: "photo-thumb" }))) : null;
}

/** A camera/file input that uploads each picture, resized, to the job and adds its ref to `refs`:
 * [element, redraw of its thumbnails]. */
function photoPicker(order, draft, id, labelKey, refs) {
  const input = h("input", { type: "file", accept: "image/*", capture: "environment", multiple: true });
  const thumbs = h("div", { id: `${id}-thumbs` });
  const status = h("p", { role: "status", "aria-live": "polite" });
  const draw = () => fill(thumbs, photoThumbs(draft, refs));
  draw();
  input.addEventListener("change", async () => {
    const files = [...input.files];
    if (!files.length) return;
    input.disabled = true;
    status.className = "muted";
    status.textContent = t("photo.uploading");
    try {
      for (const file of files) {
        const blob = await photoForUpload(file);
        const { ref } = await outbox.photo(order.id, blob);  // uploaded now, or queued when offline
        draft.photoUrls[ref] ??= URL.createObjectURL(blob);
        if (!refs.includes(ref)) refs.push(ref);
        saveDrafts();
        draw();
      }
      status.textContent = "";
    } catch (error) {
      status.className = "error";
      status.textContent = t("photo.uploadFailed", { reason: errorText(error) });
    } finally {
      input.disabled = false;
      input.value = "";
    }
  });
  return [h("div", { class: "photo-picker" }, field(id, labelKey, input), thumbs, status), draw];
}

function renderDone() {
  const section = document.getElementById("done");
  fill(section, h("h2", {}, t("technician.doneJobs")),
    h("p", { class: "muted" }, t("technician.earningsNote")),
    state.done.length ? h("ul", { class: "plain", id: "done-list" }, state.done.map((o) => h("li", {},
      `${kindText(o.kind)} · ${when(o.updated_at)} · `, h("strong", { class: "done-price" }, money(o.final_price ?? o.price_estimate)), " ",
      h("span", { class: "pill" }, statusText(o.status)))))
      : h("p", { class: "muted" }, t("technician.noDoneJobs")));
}

// -- his day: the booked visits of a local day as planned, in order, listed and on a map ---------

// His city's next day is planned the evening before (the worker's day-plan job); a day not yet
// planned is empty. `date` and `today` stay null until the first answer (asked without a date)
// names his city's today: a phone set to another zone would pick the wrong day. The plan says in
// which zone its times are.
const day = { date: null, today: null, plan: null, error: null, seq: 0 };
let dayMap = null;  // {map, layer, element}: made once, kept across redraws (Leaflet owns its element)

function shiftDay(iso, days) {
  if (!iso) return null;
  const date = new Date(`${iso}T12:00:00`);
  date.setDate(date.getDate() + days);
  return isoDay(date);
}

async function loadDay() {
  const mine = ++day.seq;  // a reply for a day he has left must not draw over the one he picked
  try {
    const plan = await api.get(day.date ? `/v1/technicians/me/day?date=${day.date}` : "/v1/technicians/me/day");
    if (mine !== day.seq) return;
    day.today ??= plan.date;
    day.date ??= plan.date;
    Object.assign(day, { plan, error: null });
  } catch (error) {
    if (mine !== day.seq) return;
    Object.assign(day, { plan: null, error });
  }
  renderDay();
}

function pickDay(date) {
  if (!date || date === day.date) return;
  Object.assign(day, { date, plan: null, error: null });
  renderDay();
  loadDay();
}

function stopLabel(stop) {
  return `${stop.sequence}. ${kindText(stop.kind)} · ${stop.address}`;
}

function renderDay() {
  const section = document.getElementById("my-day");
  if (!section) return;
  const plan = day.plan?.date === day.date ? day.plan : null;
  const stops = plan?.data ?? [];
  const input = h("input", { type: "date", value: day.date ?? "", required: true });
  input.addEventListener("change", () => pickDay(input.value));
  const previous = h("button", { type: "button", id: "day-previous", "aria-label": t("day.previous") }, "‹");
  const next = h("button", { type: "button", id: "day-next", "aria-label": t("day.next") }, "›");
  previous.addEventListener("click", () => pickDay(shiftDay(day.date, -1)));
  next.addEventListener("click", () => pickDay(shiftDay(day.date, 1)));
  dayMap ??= { element: h("div", { class: "map", id: "day-map", role: "img" }) };
  dayMap.element.setAttribute("aria-label", t("day.mapLabel"));
  const summary = day.error ? h("p", { class: "error", role: "alert" }, errorText(day.error))
    : !plan ? h("p", { class: "muted" }, t("day.loading"))
      : h("p", { class: "muted", id: "day-summary" }, stops.length ? t("day.count", { n: stops.length }) : t("day.none"));
  fill(section, h("h2", { id: "my-day-h" }, t(day.date === day.today ? "day.today" : "day.title")),
    h("div", { class: "day-nav" }, previous, h("div", {}, field("day-date", "day.date", input)), next),
    summary,
    stops.length ? h("ol", { class: "stops", id: "day-stops" }, stops.map((stop) => h("li", { dataset: { order: stop.order_id } },
      h("span", { class: "stop-seq", "aria-hidden": "true" }, String(stop.sequence)),
      h("div", {},
        h("strong", { class: "stop-window" }, windowText(stop.window_start, stop.window_end, plan.timezone)),
        ` · ${kindText(stop.kind)}`,
        h("div", { class: "stop-address" }, stop.address),
        h("div", { class: "muted stop-arrival" }, t("day.arrival", { time: clockTime(stop.planned_arrival_at, plan.timezone) })))))) : null,
    dayMap.element);
  drawDay(stops);
}

// The stops joined in their order; the map is hidden while there is nothing to show on it.
function drawDay(stops) {
  const placed = stops.filter((stop) => stop.location);
  dayMap.element.classList.toggle("hidden", !placed.length);
  if (!placed.length) return;
  if (!dayMap.map) {
    dayMap.map = createMap(dayMap.element);
    dayMap.layer = window.L.layerGroup().addTo(dayMap.map);
  }
  dayMap.map.invalidateSize();  // it was hidden, or redrawn into the page again
  dayMap.layer.clearLayers();
  if (placed.length > 1) line(placed.map((stop) => stop.location)).addTo(dayMap.layer);
  const markers = placed.map((stop) => numbered(stop.location, stop.sequence, { label: stopLabel(stop) }).addTo(dayMap.layer));
  fit(dayMap.map, markers, 16);
}

// -- his earnings: per day and per order, from the ledger, with the quality adjustment explained --

let earnings = null;  // the last statement loaded, redrawn in his language

async function loadEarnings() {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  earnings = await api.get(`/v1/technicians/me/earnings?tz=${encodeURIComponent(tz)}`);
  renderEarnings();
}

const percent = (bps, signDisplay = "exceptZero") => new Intl.NumberFormat(document.documentElement.lang,
  { style: "percent", maximumFractionDigits: 2, signDisplay }).format(bps / 10000);
const signed = (m) => `${m.amount_minor > 0 ? "+" : ""}${money(m)}`;
const dayText = (day) => new Intl.DateTimeFormat(document.documentElement.lang, { dateStyle: "medium" }).format(new Date(`${day}T00:00:00`));

function rulesText(rules) {
  const table = Object.entries(rules.adjustment_bps_by_stars).sort(([a], [b]) => b - a);
  const held = table.filter(([, bps]) => bps === null).map(([n]) => n).sort();
  const stars = table.filter(([, bps]) => bps !== null).map(([n, bps]) => `${n}★ ${percent(bps)}`);
  if (held.length) stars.push(t("earnings.ruleHeld", { stars: held.join("/") }));
  const rate = percent(rules.platform_fee_bps, "auto");
  const fee = rules.platform_fee_fixed.amount_minor ? `${rate} + ${money(rules.platform_fee_fixed)}` : rate;
  return t("earnings.rules", { version: rules.rule_version, table: stars.join(t("earnings.listSep")), fee });
}

function figures(row) {
  return [["earned", "earnings.earned"], ["paid_out", "earnings.paidOut"], ["owed", "earnings.owed"], ["recovered", "earnings.recovered"]]
    .filter(([key]) => key === "earned" || row[key].amount_minor).map(([key, label]) => `${t(label)} ${money(row[key])}`).join(" · ");
}

function adjustmentText(o) {
  if (o.kind === "cancellation") return t("earnings.cancellation");
  if (o.status === "held") return t("earnings.held", { stars: o.stars });
  const vars = { stars: o.stars, bps: percent(o.adjustment_bps), price: money(o.price), amount: signed(o.adjustment) };
  return t(o.decided_by_operations ? "earnings.explainOps" : "earnings.explain", vars);
}

function earningsOrder(o) {
  return h("li", { dataset: { order: o.order_id } },
    h("strong", {}, kindText(o.order_kind)), " ", h("span", { class: `pill ${o.status === "held" ? "warn" : o.status === "transferred" ? "ok" : ""}` },
      t(`settlementStatus.${o.status}`)), o.stars ? ` ${"★".repeat(o.stars)}` : "",
    h("div", { class: "muted" }, when(o.settled_at), " · ", String(o.order_id).slice(0, 8)),
    h("div", { class: "earnings-explain" }, adjustmentText(o)),
    h("div", {}, `${t("earnings.price")} ${money(o.price)} · ${t("earnings.adjustment")} ${signed(o.adjustment)} · `,
      `${t("earnings.fee")} −${money(o.fee)} · `, h("strong", {}, `${t("earnings.payout")} ${money(o.payout)}`)),
    h("div", { class: "muted" }, figures(o)));
}

function renderEarnings() {
  const section = document.getElementById("earnings");
  if (!section) return;
  const error = h("p", { class: "error", role: "alert" });
  const open = h("button", { type: "button", id: "earnings-open" }, t(earnings ? "earnings.reload" : "earnings.open"));
  open.addEventListener("click", () => act(open, error, loadEarnings));
  if (!earnings) {
    fill(section, h("h2", { id: "earnings-h" }, t("earnings.title")), error, h("div", { class: "actions" }, open));
    return;
  }
  const balance = (list) => (list.length ? list.map(money).join(" · ") : "—");
  fill(section, h("h2", { id: "earnings-h" }, t("earnings.title")),
    h("p", { class: "muted" }, t("earnings.period", { from: dayText(earnings.from), to: dayText(earnings.to) })),
    h("dl", { class: "facts", id: "earnings-balances" },
      h("dt", {}, t("earnings.payable")), h("dd", {}, balance(earnings.payable)),
      h("dt", {}, t("earnings.receivable")), h("dd", {}, balance(earnings.receivable))),
    earnings.rules ? h("p", { class: "notice", id: "earnings-rules" }, rulesText(earnings.rules)) : null,
    h("h3", {}, t("earnings.byDay")),
    earnings.days.length ? h("ul", { class: "plain", id: "earnings-days" }, earnings.days.map((d) => h("li", { dataset: { day: d.day } },
      h("strong", {}, dayText(d.day)), ` · ${t("earnings.orders", { n: d.orders })}`,
      h("div", {}, figures(d)),
      d.in_review.amount_minor ? h("div", { class: "muted" }, `${t("earnings.inReview")} ${money(d.in_review)}`) : null)))
      : h("p", { class: "muted" }, t("earnings.none")),
    h("h3", {}, t("earnings.byOrder")),
    earnings.orders.length ? h("ul", { class: "plain", id: "earnings-orders" }, earnings.orders.map(earningsOrder))
      : h("p", { class: "muted" }, t("earnings.none")),
    error, h("div", { class: "actions" }, open));
}

// -- onboarding: an applicant's checklist until the utility verifies a certificate --------------

let onboarding = null;  // his training, exam and certificate records while he is an applicant

async function loadApplicant() {
  [state.me, onboarding] = await Promise.all([api.get("/v1/technicians/me"), loadOnboarding(api)]);
  drawOnboarding();
}

// Until then the checklist is his page: going online, jobs and earnings wait for the verification.
function drawOnboarding() {
  const section = document.getElementById("onboarding");
  const applicant = state.me?.onboarding === "applicant" && onboarding !== null;
  main.classList.toggle("applicant", applicant);
  section?.classList.toggle("hidden", !applicant);
  if (applicant && section) {
    renderOnboarding(section, api, state.me, onboarding, () => loadApplicant().catch((error) => toast(errorText(error))));
  }
}

// -- his certificates: a photo of one awaiting review, for operations to check ------------------

const certUploads = new Map();  // certification id -> {error}: the last upload's outcome, worded at each redraw

async function loadCerts() {
  state.certs = (await api.get("/v1/technicians/me/certifications")).data;
  renderCerts();
}

function renderCerts() {
  const section = document.getElementById("my-certs");
  if (!section) return;
  fill(section, h("h2", { id: "my-certs-h" }, t("technician.myCerts")), state.certs.length
    ? h("ul", { class: "plain", id: "cert-list" }, state.certs.map(certItem))
    : h("p", { class: "muted" }, t("technician.noCerts")));
}

function certItem(c) {
  const tone = { pending: "warn", verified: "ok" }[c.status] ?? "bad";
  const head = [h("strong", {}, t(`cert.${c.kind}`)), " ", h("span", { class: `pill ${tone}` }, t(`certStatus.${c.status}`)),
    h("div", { class: "muted" }, t("technician.certNumber", { number: c.number }), " · ", c.issuer)];
  if (c.status !== "pending") return h("li", { dataset: { certification: c.id } }, head);
  const outcome = certUploads.get(c.id);
  const message = h("p", { class: outcome?.error ? "error" : null, id: `cert-photo-msg-${c.id}`, role: "status", "aria-live": "polite" },
    !outcome ? "" : outcome.error ? t("technician.certPhotoFailed", { reason: errorText(outcome.error) }) : t("technician.certPhotoOk"));
  const input = h("input", { type: "file", accept: "image/*" });
  input.addEventListener("change", async () => {
    const [file] = input.files;
    if (!file) return;
    input.disabled = true;
    try {
      await api.put(`/v1/technicians/me/certifications/${c.id}/photo`, await photoForUpload(file));
      certUploads.set(c.id, { error: null });
      toast(t("technician.certPhotoOk"));
    } catch (error) {
      certUploads.set(c.id, { error });
    }
    await loadCerts().catch(() => renderCerts());
  });
  return h("li", { dataset: { certification: c.id } }, head,
    h("p", {}, h("span", { class: `pill ${c.has_photo ? "ok" : ""}` }, t(c.has_photo ? "technician.certPhotoUploaded" : "technician.certPhotoMissing"))),
    field(`cert-photo-${c.id}`, c.has_photo ? "technician.certPhotoReplace" : "technician.certPhotoUpload", input),
    h("p", { class: "muted" }, t("technician.certPhotoHint")), message);
}
