// The operations console: open orders on a map (emergencies first) with the technicians on
// them, unfulfilled and late orders, certifications to verify with who applied (and the photo of
// the certificate), open hazards, station KPIs — and the actions: one order in full (timeline, the
// candidates of each offer and why, payment, visit, report, hazards) with assign/reassign, cancel
// and messages; alerts in a banner with a sound until acknowledged. Live over the ops socket, not
// polling; the event engine's health and its dead letters (retry, discard) are polled, as no push
// carries them.
import { t } from "../shared/i18n.js";
import { COLORS, L, createMap, dot, fit, latLng, line, redot, stationLayer } from "../shared/map.js";
import { startApp } from "../shared/shell.js";
import { LiveSocket } from "../shared/socket.js";
import { jobPhotoThumbs } from "../shared/photos.js";
import { act, errorText, field, fill, h, kindText, money, reasonText, statusText, toast, UserError, when } from "../shared/ui.js";

const OPEN = ["created", "matching", "offered", "accepted", "en_route", "arrived", "in_service"];
const TRACKED = ["accepted", "en_route", "arrived", "in_service"];
const PRIORITY_RANK = { emergency: 0, urgent: 1, routine: 2 };
const REPEAT_BEEP_MS = 30000;
const ENGINE_REFRESH_MS = 10000;
const ERROR_SHOWN_CHARS = 160;
const main = document.getElementById("main");
const state = { stations: [], open: [], unfulfilled: [], certs: [], hazards: [], onDuty: [], positions: new Map(),
  alerts: new Map(), detail: null, picker: [], engine: null, deadLetters: [] };
let api;
let map;
let orderLayer;
let techLayer;
let opsSocket;
let booted = false;
const sockets = new Map();  // order id -> LiveSocket following its technician

startApp("ops", ["admin"], {
  boot: async (client) => {
    api = client;
    state.stations = (await api.get("/v1/stations")).data;
    render();
    await Promise.all([refresh(), loadAlerts(), loadEngine()]);
    booted = true;
    opsSocket = new LiveSocket(() => api.socketUrl("/v1/ws/ops"), { onMessage: onOpsMessage, onState: showConnection });
    setInterval(tick, 1000);
    setInterval(() => loadEngine().catch(() => {}), ENGINE_REFRESH_MS);
  },
  rerender: () => { render(); draw(); renderBanner(); drawEngine(); if (state.detail) renderDetail(); },
});

function render() {
  fill(main,
    h("section", { id: "alert-banner", class: "alert-banner hidden", role: "alert", "aria-live": "assertive", "aria-labelledby": "alert-h" }),
    h("section", { id: "order-detail", class: "card hidden", "aria-labelledby": "detail-h", tabindex: "-1" }),
    h("div", { class: "grid-2" },
      h("section", { class: "card", "aria-labelledby": "map-h" }, h("h2", { id: "map-h" }, t("ops.map")),
        h("div", { class: "map tall", id: "ops-map", role: "img", "aria-label": t("ops.mapLabel") }),
        h("p", { class: "muted" }, t("ops.techNote"))),
      h("section", { class: "card", "aria-labelledby": "open-h" }, h("h2", { id: "open-h" }, t("ops.openOrders")), h("div", { id: "open-orders", class: "table-wrap" }))),
    h("div", { class: "grid-2" },
      h("section", { class: "card", "aria-labelledby": "late-h" }, h("h2", { id: "late-h" }, t("ops.lateUnfulfilled")), h("div", { id: "late-orders", class: "table-wrap" })),
      h("section", { class: "card", "aria-labelledby": "certs-h" }, h("h2", { id: "certs-h" }, t("ops.certifications")), h("div", { id: "certs", class: "table-wrap" }))),
    h("div", { class: "grid-2" },
      h("section", { class: "card", "aria-labelledby": "haz-h" }, h("h2", { id: "haz-h" }, t("ops.hazards")), h("div", { id: "hazards", class: "table-wrap" })),
      kpiCard()),
    engineSection(),
    metersSection());
  map = createMap(document.getElementById("ops-map"), { zoom: 12 });
  const stations = stationLayer(state.stations).addTo(map);
  orderLayer = L.layerGroup().addTo(map);
  techLayer = L.layerGroup().addTo(map);
  marks.clear();  // a new map: its layers start empty
  fit(map, [stations], 13);
}

function showConnection(status) {
  const slot = document.getElementById("status-slot");
  fill(slot, h("span", { id: "ops-connection", class: `pill ${status === "open" ? "ok" : "warn"}` }, t(`ops.connection.${status}`)));
}

/**
 * Redraws `el` with `draw()` and puts back what the operator typed or chose in its controls (by
 * id) and the focus with the caret: a live update must not wipe or interrupt a half-typed
 * evidence or reason. An action that succeeded clears its own controls before it redraws.
 */
function keepTyped(el, draw) {
  const typed = new Map([...el.querySelectorAll("input[id], select[id], textarea[id]")].map((c) => [c.id, c.value]));
  const focused = el.contains(document.activeElement) && document.activeElement.id ? document.activeElement : null;
  const caret = focused && typeof focused.selectionStart === "number" ? [focused.selectionStart, focused.selectionEnd] : null;
  draw();
  for (const [id, value] of typed) {
    const control = document.getElementById(id);
    if (!control || !el.contains(control)) continue;
    if (control.tagName === "SELECT" && ![...control.options].some((o) => o.value === value && !o.disabled)) continue;
    control.value = value;
  }
  const again = focused && document.getElementById(focused.id);
  if (again && el.contains(again)) {
    again.focus({ preventScroll: true });
    if (caret) again.setSelectionRange(...caret);
  }
}

/** By id, as a redraw during the request may have replaced the controls the action read. */
function clearControls(...ids) {
  for (const id of ids) { const control = document.getElementById(id); if (control) control.value = ""; }
}

// Bumped by every change this console makes: a refresh that started before it is stale.
let localChanges = 0;

async function refresh() {
  const startedAt = localChanges;
  const [open, unfulfilled, certs, hazards, onDuty] = await Promise.all([
    Promise.all(OPEN.map((s) => api.all(`/v1/orders?status=${s}&limit=200`, 500))).then((lists) => lists.flat()),
    api.get("/v1/orders?status=unfulfilled&limit=50"),
    api.get("/v1/ops/certifications?status=pending&limit=100"),
    api.get("/v1/hazards?limit=200"),
    api.get("/v1/operations/technicians"),
  ]);
  if (startedAt !== localChanges) return refresh();
  state.onDuty = onDuty.data;
  state.open = open;
  state.unfulfilled = unfulfilled.data;
  state.certs = certs.data;
  loadCertPhotos();
  state.hazards = byAge(hazards.data);
  follow();
  draw();
}

// -- live: the ops socket ----------------------------------------------------------------------

function onOpsMessage(message) {
  if (message.type === "ready" || message.type === "resync") {
    if (booted) { refresh().catch(() => {}); loadAlerts().catch(() => {}); loadEngine().catch(() => {}); }  // missed while away
  } else if (message.type === "order_status") {
    orderChanged(message).catch(() => {});
  } else if (message.type === "alert") {
    if (!message.alert.acknowledged_at) { state.alerts.set(message.alert.id, message.alert); renderBanner(); beep(); }
  } else if (message.type === "alert_acknowledged") {
    state.alerts.delete(message.id);
    renderBanner();
  } else if (message.type === "certification_queue") {
    loadCerts().catch(() => {});
  } else if (message.type === "hazards") {
    loadHazards().catch(() => {});
  }
}

const byAge = (hazards) => hazards.sort((a, b) => b.age_days - a.age_days || String(a.deadline_at).localeCompare(String(b.deadline_at)));

// A hazard recorded at a door, fixed or resolved by another operator: the list again.
async function loadHazards() {
  state.hazards = byAge((await api.get("/v1/hazards?limit=200")).data);
  draw();
}

// An application, a photo or another operator's decision: the queue again.
async function loadCerts() {
  state.certs = (await api.get("/v1/ops/certifications?status=pending&limit=100")).data;
  loadCertPhotos();
  draw();
}

async function orderChanged({ order_id: id, status }) {
  const without = (list) => list.filter((o) => o.id !== id);
  state.open = without(state.open);
  state.unfulfilled = without(state.unfulfilled);
  if (OPEN.includes(status) || status === "unfulfilled") {
    const order = await api.get(`/v1/orders/${id}`);
    (status === "unfulfilled" ? state.unfulfilled : state.open).push(order);
  }
  follow();
  draw();
  if (state.detail && state.detail.order.id === id) await openOrder(id, { focus: false });
}

async function loadAlerts() {
  const page = await api.get("/v1/ops/alerts?open=true");
  state.alerts = new Map(page.data.map((a) => [a.id, a]));
  renderBanner();
  if (state.alerts.size) beep();
}

let audio;
let beeps = 0;
let lastBeep = 0;
/** A short two-tone beep made on the spot (no audio file); silent where the page may not play sound. */
function beep() {
  beeps += 1;
  lastBeep = Date.now();
  document.getElementById("alert-banner")?.setAttribute("data-beeps", String(beeps));
  try {
    audio ??= new AudioContext();
    if (audio.state === "suspended") audio.resume();
    for (const [offset, frequency] of [[0, 880], [0.25, 660]]) {
      const at = audio.currentTime + offset;
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "square";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.22);
      osc.connect(gain).connect(audio.destination);
      osc.start(at);
      osc.stop(at + 0.23);
    }
  } catch {
    // No audio output: the banner still stays until acknowledged.
  }
}

function tick() {
  for (const el of document.querySelectorAll("[data-sla]")) el.replaceWith(slaClock(el.dataset.sla, el.dataset.status));
  const critical = [...state.alerts.values()].some((a) => a.level === "critical");
  if (critical && beeps && Date.now() - lastBeep > REPEAT_BEEP_MS) beep();
}

function alertText(alert) {
  const text = t(`alert.kind.${alert.kind}`);
  return text === `alert.kind.${alert.kind}` ? alert.kind : text;
}

function renderBanner() {
  const banner = document.getElementById("alert-banner");
  if (!banner) return;
  const alerts = [...state.alerts.values()].sort((a, b) => (a.level === "critical" ? 0 : 1) - (b.level === "critical" ? 0 : 1)
    || String(a.created_at).localeCompare(String(b.created_at)));
  banner.classList.toggle("hidden", !alerts.length);
  banner.classList.toggle("critical", alerts.some((a) => a.level === "critical"));
  fill(banner, h("h2", { id: "alert-h" }, t("ops.alerts", { n: alerts.length })), h("ul", { class: "plain" }, alerts.map((a) => {
    const ack = h("button", { type: "button", class: "primary", id: `ack-${a.id}` }, t("ops.acknowledge"));
    ack.addEventListener("click", () => act(ack, null, async () => {
      await api.post(`/v1/ops/alerts/${a.id}/acknowledge`, {});
      state.alerts.delete(a.id);
      renderBanner();
      toast(t("ops.acknowledged"));
    }));
    const open = a.order_id ? h("button", { type: "button", id: `alert-order-${a.id}` }, t("ops.openOrder")) : null;
    open?.addEventListener("click", () => openOrder(a.order_id));
    return h("li", { dataset: { alert: a.id } },
      h("span", { class: `pill ${a.level === "critical" ? "emergency" : "warn"}` }, t(`alert.level.${a.level}`)), " ",
      h("strong", {}, alertText(a)), " ", h("span", { class: "muted" }, when(a.created_at)),
      h("div", { class: "actions" }, open, ack));
  })));
}

/** One order socket per order on the road: it carries the technician's live position. */
function follow() {
  const wanted = new Set(state.open.filter((o) => TRACKED.includes(o.status)).map((o) => o.id));
  for (const [id, socket] of sockets) if (!wanted.has(id)) { socket.close(); sockets.delete(id); state.positions.delete(id); }
  for (const id of wanted) {
    if (sockets.has(id)) continue;
    sockets.set(id, new LiveSocket(() => api.socketUrl(`/v1/ws/orders/${id}`), {
      onMessage: (message) => {
        if (message.type === "position") { state.positions.set(id, message.position); drawMap(); }
      },
    }));
  }
}

/** Minutes left to the SLA deadline (or past it), kept current by tick(). */
function slaClock(deadline, status) {
  const left = Math.round((new Date(deadline).getTime() - Date.now()) / 60000);
  const running = OPEN.includes(status);
  const amount = (n) => (n >= 120 ? t("ops.hours", { n: Math.floor(n / 60) }) : t("ops.minutes", { n }));
  const text = !running ? when(deadline) : left >= 0 ? t("ops.slaLeft", { time: amount(left) }) : t("ops.slaOver", { time: amount(-left) });
  return h("span", { class: `pill ${running && left < 0 ? "bad" : running && left < 10 ? "warn" : ""}`, dataset: { sla: deadline, status },
    title: when(deadline) }, text);
}

function sortedOpen() {
  return [...state.open].sort((a, b) => PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] || a.sla_deadline.localeCompare(b.sla_deadline));
}

function draw() {
  drawMap();
  const now = new Date().toISOString();
  const orderTable = (rows, id) => rows.length ? h("table", { id }, h("thead", {}, h("tr", {},
    ["ops.priority", "ops.kind", "ops.status", "ops.created", "ops.sla"].map((k) => h("th", { scope: "col" }, t(k))))),
  h("tbody", {}, rows.map((o) => {
    const row = h("tr", { class: "clickable", tabindex: "0", dataset: { order: o.id }, "aria-label": t("ops.openOrderOf", { kind: kindText(o.kind) }) },
      h("td", {}, h("span", { class: `pill ${o.priority}` }, t(`priority.${o.priority}`))), h("td", {}, kindText(o.kind)),
      h("td", {}, statusText(o.status)), h("td", {}, when(o.created_at)), h("td", {}, slaClock(o.sla_deadline, o.status)));
    row.addEventListener("click", () => openOrder(o.id));
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") openOrder(o.id); });
    return row;
  })))
    : h("p", { class: "muted" }, t("ops.none"));
  const open = sortedOpen();
  fill(document.getElementById("open-orders"), orderTable(open, "open-table"));
  const late = open.filter((o) => o.sla_deadline < now);
  fill(document.getElementById("late-orders"), orderTable([...state.unfulfilled, ...late], "late-table"));
  drawCerts();
  drawHazards();
}

// The map's layers by what they show, kept across refreshes and moved in place, so a tooltip an
// operator has open survives the refresh every few seconds.
const marks = new Map();

function drawMap() {
  if (!orderLayer) return;
  const seen = new Set();
  const keep = (key, update, create) => {
    seen.add(key);
    if (marks.has(key)) update(marks.get(key));
    else marks.set(key, create());
  };
  const place = (key, layer, point, style) => keep(key, (m) => redot(m, point, style), () => dot(point, style).addTo(layer));
  for (const tech of state.onDuty) {
    if (tech.position) place(`tech:${tech.id}`, techLayer, tech.position,
      { color: COLORS.technician, radius: 5, label: `${tech.name} · ${t(`tech.${tech.status}`)}` });
  }
  for (const o of state.open) {
    place(`order:${o.id}`, orderLayer, o.location, { color: COLORS[o.priority], radius: o.priority === "emergency" ? 11 : 8,
      label: `${t(`priority.${o.priority}`)} · ${kindText(o.kind)} · ${statusText(o.status)}` });
    const position = state.positions.get(o.id);
    if (position) {
      place(`on:${o.id}`, techLayer, position, { color: COLORS.technician, radius: 7, label: t("ops.technicianOn", { kind: kindText(o.kind) }) });
      keep(`route:${o.id}`, (route) => route.setLatLngs([position, o.location].map(latLng)),
        () => line([position, o.location]).addTo(techLayer));
    }
  }
  for (const [key, layer] of marks) {
    if (!seen.has(key)) {
      layer.remove();
      marks.delete(key);
    }
  }
}

// -- one order: what happened, who was considered, and the actions ---------------------------

async function openOrder(id, { focus = true } = {}) {
  const detail = await api.get(`/v1/ops/orders/${id}`);
  state.detail = detail;
  state.picker = detail.allowed_actions.includes("assign") ? (await api.get(`/v1/ops/orders/${id}/technicians`)).data : [];
  renderDetail();
  if (focus) {
    const section = document.getElementById("order-detail");
    section.scrollIntoView({ block: "start" });
    section.focus({ preventScroll: true });
  }
}

const km = (m) => (m === null || m === undefined ? "—" : `${(m / 1000).toFixed(1)} km`);
const minutes = (s) => (s === null || s === undefined ? "—" : t("ops.minutes", { n: Math.max(1, Math.round(s / 60)) }));
const slug = (prefix, value) => {
  const text = t(`${prefix}.${value}`);
  return text === `${prefix}.${value}` ? value : text;
};

function problemText(error) {
  const p = error?.problem || {};
  if (p.current_state) return t("ops.stateConflict", { state: statusText(p.current_state) });
  if (p.reason) return t("ops.cannotAssign", { reason: slug("ops.why", p.reason) });
  return errorText(error);  // translated from the slug, never the server's English detail
}

function renderDetail() {
  const d = state.detail;
  const o = d.order;
  const section = document.getElementById("order-detail");
  if (!section) return;
  // The same order redrawn (a live update): what the operator was typing or choosing stays.
  const same = section.dataset.order === o.id && !section.classList.contains("hidden");
  section.classList.remove("hidden");
  section.dataset.order = o.id;
  const close = h("button", { type: "button", id: "detail-close" }, t("ops.close"));
  close.addEventListener("click", () => { state.detail = null; section.classList.add("hidden"); });
  const draw = () => fill(section,
    h("div", { class: "detail-head" },
      h("h2", { id: "detail-h" }, t("ops.orderDetail"), " · ", kindText(o.kind)),
      h("span", { class: `pill ${o.priority}` }, t(`priority.${o.priority}`)),
      h("span", { class: "pill", id: "detail-status" }, statusText(o.status)),
      slaClock(o.sla_deadline, o.status), close),
    h("div", { class: "grid-2" },
      h("div", {},
        h("dl", { class: "facts" },
          h("dt", {}, t("ops.customer")), h("dd", {}, d.customer ? `${d.customer.name} · ${d.customer.phone}` : "—"),
          h("dt", {}, t("ops.address")), h("dd", {}, d.address ? `${d.address.label} · ${d.address.line}` : "—"),
          h("dt", {}, t("ops.technician")), h("dd", { id: "detail-technician" },
            d.technician ? `${d.technician.name} · ${d.technician.phone} · ${t(`tech.${d.technician.status}`)}` : "—"),
          h("dt", {}, t("ops.description")), h("dd", {}, o.description || "—"),
          o.status_reason ? [h("dt", {}, t("ops.statusReason")), h("dd", {}, reasonText(o.status_reason))] : null),
        actionsPanel(d)),
      h("div", {}, h("h3", {}, t("ops.timeline")), timeline(d.events))),
    h("h3", {}, t("ops.offers")), offersTable(d.offers),
    h("h3", {}, t("ops.candidates")), candidateRounds(d.candidate_rounds),
    h("div", { class: "grid-2" },
      h("div", {}, h("h3", {}, t("ops.payment")), paymentFacts(d.payment),
        h("h3", {}, t("ops.visit")), visitFacts(d.visit)),
      h("div", {}, h("h3", {}, t("ops.report")), reportFacts(d.report), jobPhotoThumbs(api, o.id, d.report?.photo_refs, "report-photos"),
        h("h3", {}, t("ops.orderHazards")), d.hazards.length ? h("ul", { class: "plain", id: "detail-hazards" }, d.hazards.map((z) => h("li", {},
          `${slug("hazard", z.category)} · ${slug("severity", z.severity)} · ${slug("hazardStatus", z.status)}`,
          jobPhotoThumbs(api, o.id, [...z.photo_refs, ...z.fix_photo_refs], "hazard-photos")))) : h("p", { class: "muted" }, t("ops.none")),
        h("h3", {}, t("ops.messages")), d.messages.length ? h("ul", { class: "plain", id: "detail-messages" }, d.messages.map((m) => h("li", {},
          h("span", { class: "pill" }, t(`ops.to.${m.recipient}`)), " ", m.text, " ", h("span", { class: "muted" }, when(m.created_at)))))
          : h("p", { class: "muted" }, t("ops.none")))));
  if (same) keepTyped(section, draw);
  else draw();
}

function actionsPanel(d) {
  const o = d.order;
  const error = h("p", { class: "error", role: "alert", id: "detail-error" });
  const run = (button, action) => act(button, null, async () => {
    error.textContent = "";
    try {
      await action();
    } catch (e) {
      error.textContent = problemText(e);
    }
  });
  const parts = [h("h3", {}, t("ops.actions"))];
  if (d.allowed_actions.includes("assign")) {
    const options = state.picker.map((p) => {
      const why = p.assignable ? `${km(p.distance_m)} · ${minutes(p.eta_s)}` : slug("ops.why", p.reason);
      return h("option", { value: p.technician_id, disabled: !p.assignable || p.technician_id === o.technician_id },
        `${p.name} · ${t(`tech.${p.status}`)} · ${why}`);
    });
    const pick = h("select", {}, h("option", { value: "" }, t("ops.chooseTechnician")), options);
    const reason = h("input", { maxlength: 500 });
    const go = h("button", { type: "button", class: "primary", id: "assign-submit" }, t(o.technician_id ? "ops.reassign" : "ops.assign"));
    go.addEventListener("click", () => run(go, async () => {
      if (!pick.value) throw new UserError(t("ops.chooseTechnician"));
      const done = await api.post(`/v1/ops/orders/${o.id}/assign`, reason.value.trim()
        ? { technician_id: pick.value, reason: reason.value.trim() } : { technician_id: pick.value });
      toast(t("ops.assigned"));
      clearControls("assign-technician", "assign-reason");
      await openOrder(done.order.id, { focus: false });
    }));
    parts.push(h("fieldset", {}, h("legend", {}, t(o.technician_id ? "ops.reassign" : "ops.assign")),
      field("assign-technician", "ops.technician", pick), field("assign-reason", "ops.assignReason", reason),
      h("div", { class: "actions" }, go)));
  }
  if (d.allowed_actions.includes("consent")) {
    const agree = h("button", { type: "button", id: "consent-submit" }, t("ops.consent"));
    agree.addEventListener("click", () => run(agree, async () => {
      await api.post(`/v1/orders/${o.id}/consent`, {});
      await openOrder(o.id, { focus: false });
    }));
    parts.push(h("div", { class: "actions" }, agree));
  }
  if (d.allowed_actions.includes("cancel")) {
    const reason = h("input", { maxlength: 500 });
    const cancel = h("button", { type: "button", class: "danger", id: "cancel-submit" }, t("ops.cancelOrder"));
    cancel.addEventListener("click", () => run(cancel, async () => {
      if (!reason.value.trim()) throw new UserError(t("ops.reasonNeeded"));
      await api.post(`/v1/ops/orders/${o.id}/cancel`, { reason: reason.value.trim() });
      toast(t("ops.cancelled"));
      clearControls("cancel-reason");
      await openOrder(o.id, { focus: false });
    }));
    parts.push(h("fieldset", {}, h("legend", {}, t("ops.cancelOrder")), field("cancel-reason", "ops.cancelReason", reason),
      h("div", { class: "actions" }, cancel)));
  }
  const to = h("select", {}, h("option", { value: "customer" }, t("ops.to.customer")),
    o.technician_id ? h("option", { value: "technician" }, t("ops.to.technician")) : null);
  const text = h("textarea", { maxlength: 1000 });
  const send = h("button", { type: "button", id: "message-send" }, t("ops.send"));
  send.addEventListener("click", () => run(send, async () => {
    if (!text.value.trim()) throw new UserError(t("ops.messageNeeded"));
    await api.post(`/v1/ops/orders/${o.id}/messages`, { to: to.value, text: text.value.trim() });
    toast(t("ops.sent"));
    clearControls("message-text");
    await openOrder(o.id, { focus: false });
  }));
  parts.push(h("fieldset", {}, h("legend", {}, t("ops.message")), field("message-to", "ops.recipient", to),
    field("message-text", "ops.messageText", text), h("div", { class: "actions" }, send)), error);
  return h("div", { id: "detail-actions" }, parts);
}

function timeline(events) {
  return h("ol", { class: "timeline", id: "detail-timeline" }, events.map((e) => h("li", {},
    h("span", { class: "muted" }, when(e.created_at)), " ", slug("event", e.action),
    e.from_status && e.from_status !== e.to_status ? ` · ${statusText(e.from_status)} → ${statusText(e.to_status)}` : "",
    ` · ${slug("actor", e.actor_role)}`, e.reason ? h("div", { class: "muted" }, reasonText(e.reason)) : null)));
}

function offersTable(offers) {
  if (!offers.length) return h("p", { class: "muted" }, t("ops.none"));
  return h("div", { class: "table-wrap" }, h("table", { id: "offers-table" },
    h("thead", {}, h("tr", {}, ["ops.attempt", "ops.technician", "ops.policy", "ops.offerStatus", "ops.distance", "ops.eta", "ops.offeredAt", "ops.decided"]
      .map((k) => h("th", { scope: "col" }, t(k))))),
    h("tbody", {}, offers.map((f) => h("tr", {}, h("td", { class: "num" }, f.attempt), h("td", {}, f.technician_name || f.technician_id.slice(0, 8)),
      h("td", {}, slug("ops.policy", f.policy)), h("td", {}, slug("ops.offer", f.status)), h("td", { class: "num" }, km(f.distance_m)),
      h("td", { class: "num" }, minutes(f.eta_s)), h("td", {}, when(f.created_at)),
      h("td", {}, f.decided_at ? when(f.decided_at) : "—", f.decline_reason ? h("div", { class: "muted" }, f.decline_reason) : null))))));
}

function candidateRounds(rounds) {
  if (!rounds.length) return h("p", { class: "muted" }, t("ops.noCandidates"));
  return h("div", { id: "candidates" }, rounds.map((r) => h("div", { class: "table-wrap", dataset: { round: r.round } },
    h("h4", {}, t("ops.round", { n: r.round }), " · ", h("span", { class: "muted" }, when(r.created_at))),
    h("table", {}, h("thead", {}, h("tr", {}, ["ops.technician", "ops.outcome", "ops.distance", "ops.eta", "ops.rating", "ops.certification", "ops.capacity", "ops.blocked"]
      .map((k) => h("th", { scope: "col" }, t(k))))),
    h("tbody", {}, r.candidates.map((c) => h("tr", { dataset: { candidate: c.technician_id } },
      h("td", {}, c.technician_name || c.technician_id.slice(0, 8)),
      h("td", {}, c.picked ? h("span", { class: "pill ok" }, t("ops.picked")) : h("span", { class: "pill" }, slug("ops.why", c.reason))),
      h("td", { class: "num" }, km(c.distance_m)), h("td", { class: "num" }, minutes(c.eta_s)),
      h("td", { class: "num" }, c.rating === null ? t("ops.unrated") : c.rating.toFixed(1)),
      h("td", {}, c.certification ? slug("ops.why", c.certification) : t("ops.certified")),
      h("td", { class: "num" }, c.max_jobs === null ? "—" : `${c.active_jobs}/${c.max_jobs}`),
      h("td", {}, t(c.blocked ? "common.yes" : "common.no")))))))));
}

function facts(pairs) {
  const shown = pairs.filter(([, v]) => v !== null && v !== undefined && v !== "");
  return shown.length ? h("dl", { class: "facts" }, shown.map(([k, v]) => [h("dt", {}, t(k)), h("dd", {}, v)])) : h("p", { class: "muted" }, t("ops.none"));
}

function paymentFacts(p) {
  if (!p) return h("p", { class: "muted", id: "detail-payment" }, t("ops.noPayment"));
  return h("div", { id: "detail-payment" }, facts([["ops.paymentStatus", slug("payment", p.status)], ["ops.held", money(p.held)],
    ["ops.captured", money(p.captured)], ["ops.refunded", money(p.refunded)]]));
}

function visitFacts(v) {
  if (!v) return h("p", { class: "muted" }, t("ops.none"));
  return facts([["ops.verification", v.verification ? slug("verify", v.verification) : null], ["ops.departed", when(v.departed_at)],
    ["ops.checkedIn", when(v.checked_in_at)], ["ops.checkedOut", when(v.checked_out_at)], ["ops.visitOutcome", slug("outcome", v.outcome)]]);
}

function reportFacts(r) {
  if (!r) return h("p", { class: "muted" }, t("ops.none"));
  return facts([["ops.workDone", r.work_done], ["ops.finalPrice", money({ amount_minor: r.final_price_minor, currency: r.currency })],
    ["ops.parts", (r.parts || []).map((p) => `${p.name} ×${p.quantity}`).join("、")], ["ops.valveClosed", r.valve_closed ? t("common.yes") : null]]);
}

// -- certifications with who applied; hazards with their actions ------------------------------

/** Only pictures this site serves (or inline ones): an outside address would leak the admin's visit. */
const ownPicture = (ref) => typeof ref === "string" && ((ref.startsWith("/") && !ref.startsWith("//")) || ref.startsWith("data:image/"));

// "<certification id>@<uploaded at>" -> the photo fetched once with the console's token, as an
// object URL (an <img src> cannot send the token); a new upload has a new key.
const certPhotos = new Map();

function certPhotoKey(a) {
  return a.has_photo ? `${a.certification.id}@${a.photo_uploaded_at}` : null;
}

/** Loads the photos of the queue not loaded yet and frees those no longer in it. */
function loadCertPhotos() {
  const wanted = new Set(state.certs.map(certPhotoKey).filter(Boolean));
  for (const [key, photo] of certPhotos) {
    if (wanted.has(key)) continue;
    if (photo.url) URL.revokeObjectURL(photo.url);
    certPhotos.delete(key);
  }
  for (const a of state.certs) {
    const key = certPhotoKey(a);
    if (!key || certPhotos.has(key)) continue;
    const photo = { url: null, failed: false };
    certPhotos.set(key, photo);
    api.raw(`/v1/certifications/${a.certification.id}/photo`).then((response) => response.blob()).then((blob) => {
      if (certPhotos.get(key) === photo) photo.url = URL.createObjectURL(blob);
    }).catch(() => { photo.failed = true; }).finally(() => { if (certPhotos.get(key) === photo) drawCerts(); });
  }
}

function certPhotoCell(a) {
  const photo = certPhotos.get(certPhotoKey(a));
  if (!photo) return h("span", { class: "muted cert-no-photo" }, t("ops.noCertPhoto"));
  if (photo.failed) return h("span", { class: "muted" }, t("ops.certPhotoFailed"));
  if (!photo.url) return h("span", { class: "muted", "aria-busy": "true" }, "…");
  const alt = t("ops.certPhotoOf", { name: a.applicant.name, number: a.certification.number });
  const open = h("button", { type: "button", class: "cert-photo", id: `cert-photo-${a.certification.id}`, title: t("ops.certPhotoOpen"),
    style: "padding:0;border:0;background:none;cursor:zoom-in" },
  h("img", { src: photo.url, alt, class: "cert-photo-thumb", style: "display:block;max-width:96px;max-height:72px;object-fit:contain" }));
  open.addEventListener("click", () => showCertPhoto(photo.url, alt));
  return open;
}

/** The photo at full size over the console, with a way to open it in a tab of its own. */
function showCertPhoto(url, alt) {
  document.getElementById("cert-photo-dialog")?.close();
  const dialog = h("dialog", { class: "card", id: "cert-photo-dialog", "aria-label": alt, style: "max-width:min(60rem, 96vw)" });
  dialog.addEventListener("close", () => dialog.remove());
  const close = h("button", { type: "button", class: "primary", id: "cert-photo-close" }, t("ops.certPhotoClose"));
  close.addEventListener("click", () => dialog.close());
  fill(dialog, h("img", { src: url, alt, style: "display:block;max-width:100%;max-height:80vh;margin:auto" }),
    h("div", { class: "actions" }, h("a", { href: url, target: "_blank", rel: "noopener", class: "button" }, t("ops.certPhotoNewTab")), close));
  document.body.append(dialog);
  dialog.showModal();
}

function drawCerts() {
  const wrap = document.getElementById("certs");
  if (!wrap) return;
  if (!state.certs.length) { fill(wrap, h("p", { class: "muted" }, t("ops.noCerts"))); return; }
  keepTyped(wrap, () => fill(wrap, h("table", { id: "cert-table" }, h("thead", {}, h("tr", {},
    ["ops.applicant", "ops.certKind", "ops.certNumber", "ops.certPhoto", "ops.validity", "ops.training", "ops.decide"]
      .map((k) => h("th", { scope: "col" }, t(k))))),
  h("tbody", {}, state.certs.map((a) => {
    const c = a.certification;
    const reason = h("input", { maxlength: 500, id: `reason-${c.id}` });
    const verify = h("button", { type: "button", class: "ok" }, t("ops.verify"));
    const reject = h("button", { type: "button", class: "danger" }, t("ops.reject"));
    const decide = (button, decision) => act(button, null, async () => {
      await api.post(`/v1/certifications/${c.id}/${decision}`, reason.value.trim() ? { reason: reason.value.trim() } : {});
      localChanges += 1;
      toast(t(`ops.decided.${decision}`));
      state.certs = state.certs.filter((x) => x.certification.id !== c.id);
      loadCertPhotos();
      drawCerts();
    });
    verify.addEventListener("click", () => decide(verify, "verify"));
    reject.addEventListener("click", () => decide(reject, "reject"));
    const training = a.training.length ? h("ul", { class: "plain" }, a.training.map((r) => h("li", {},
      `${t(`ops.record.${r.record_type}`)} · ${t(`cert.${r.kind}`)} · ${when(r.held_at)}`,
      r.score !== null ? ` · ${t("ops.score", { n: r.score })}` : "",
      r.passed === null ? "" : ` · ${t(r.passed ? "ops.passed" : "ops.failed")}`))) : h("span", { class: "muted" }, t("ops.noTraining"));
    return h("tr", { dataset: { technician: a.applicant.id, certification: c.id } },
      h("td", {}, ownPicture(a.photo_ref) ? h("img", { src: a.photo_ref, alt: t("ops.photoOf", { name: a.applicant.name }), class: "applicant-photo" }) : null,
        h("strong", {}, a.applicant.name), h("div", { class: "muted" }, a.applicant.phone)),
      h("td", {}, t(`cert.${c.kind}`)), h("td", {}, c.number, h("div", { class: "muted" }, c.issuer)),
      h("td", {}, certPhotoCell(a)),
      h("td", {}, `${when(c.valid_from)} – ${when(c.valid_until)}`), h("td", {}, training),
      h("td", {}, h("label", { for: reason.id, class: "sr-only" }, t("ops.reason")), reason, h("div", { class: "actions" }, verify, reject)));
  })))));
}

function drawHazards() {
  const now = new Date().toISOString();
  const wrap = document.getElementById("hazards");
  keepTyped(wrap, () => fill(wrap, state.hazards.length ? h("table", { id: "hazard-table" },
    h("thead", {}, h("tr", {}, ["ops.age", "ops.category", "ops.severity", "ops.deadline", "ops.hazardActions"].map((k) => h("th", { scope: "col" }, t(k))))),
    h("tbody", {}, state.hazards.map((z) => {
      const evidence = h("input", { maxlength: 2000, id: `evidence-${z.id}` });
      const resolve = h("button", { type: "button", id: `resolve-${z.id}` }, t("ops.markResolved"));
      resolve.addEventListener("click", () => act(resolve, null, async () => {
        if (!evidence.value.trim()) throw new UserError(t("ops.evidenceNeeded"));
        await api.post(`/v1/ops/hazards/${z.id}/resolve`, { evidence: evidence.value.trim() });
        localChanges += 1;
        toast(t("ops.resolved"));
        state.hazards = state.hazards.filter((x) => x.id !== z.id);
        drawHazards();
      }));
      const followup = z.followup_order_id ? h("button", { type: "button", id: `followup-${z.id}` }, t("ops.assignFollowup")) : null;
      followup?.addEventListener("click", () => openOrder(z.followup_order_id));
      return h("tr", { dataset: { hazard: z.id } }, h("td", { class: "num" }, t("ops.days", { n: z.age_days })),
        h("td", {}, t(`hazard.${z.category}`), z.description ? h("div", { class: "muted" }, z.description) : null),
        h("td", {}, h("span", { class: `pill ${z.severity === "critical" ? "bad" : "warn"}` }, t(`severity.${z.severity}`))),
        h("td", {}, z.deadline_at && z.deadline_at < now ? h("span", { class: "pill bad" }, when(z.deadline_at)) : when(z.deadline_at)),
        h("td", {}, h("div", { class: "actions" }, followup),
          h("label", { for: evidence.id, class: "sr-only" }, t("ops.evidence")), evidence,
          h("div", { class: "actions" }, resolve)));
    })))
    : h("p", { class: "muted" }, t("ops.none"))));
}

function kpiCard() {
  const today = new Date();
  const iso = (d) => d.toISOString().slice(0, 10);
  const station = h("select", {}, state.stations.map((s) => new Option(s.name, s.id)));
  const from = h("input", { type: "date", value: iso(new Date(today.getTime() - 30 * 86400000)) });
  const to = h("input", { type: "date", value: iso(today) });
  const out = h("div", { id: "kpis", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert" });
  const show = h("button", { type: "submit", class: "primary", id: "show-kpis" }, t("ops.showKpis"));
  const form = h("form", { class: "card", "aria-labelledby": "kpi-h" }, h("h2", { id: "kpi-h" }, t("ops.kpis")),
    h("div", { class: "row" }, h("div", {}, field("kpi-station", "auditor.station", station)),
      h("div", {}, field("kpi-from", "auditor.from", from)), h("div", {}, field("kpi-to", "auditor.to", to))),
    error, h("div", { class: "actions" }, show), out);
  const load = () => act(show, error, async () => {
    if (!station.value) return;
    const end = new Date(new Date(`${to.value}T00:00:00`).getTime() + 86400000).toISOString();
    const params = new URLSearchParams({ from: new Date(`${from.value}T00:00:00`).toISOString(), to: end });
    const k = await api.get(`/v1/stations/${station.value}/kpis?${params}`);
    const pct = (x) => (x === null ? "—" : `${(x * 100).toFixed(0)}%`);
    const kinds = Object.entries(k.orders_by_kind);
    fill(out, h("dl", { class: "facts" },
      h("dt", {}, t("ops.homeEntry")), h("dd", { id: "kpi-home-entry" }, pct(k.home_entry_rate)),
      h("dt", {}, t("ops.medianArrival")), h("dd", {}, k.median_arrival_min === null ? "—" : `${k.median_arrival_min.toFixed(0)} min`),
      h("dt", {}, t("ops.firstFix")), h("dd", {}, pct(k.first_visit_fix_rate)),
      h("dt", {}, t("ops.openHazardsByAge")), h("dd", {}, Object.entries(k.open_hazards_by_age).map(([bucket, n]) => `${bucket}: ${n}`).join(" · ") || "—")),
    kinds.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("ops.kind")), h("th", { scope: "col" }, t("ops.byStatus")))),
      h("tbody", {}, kinds.map(([kind, counts]) => h("tr", {}, h("td", {}, kindText(kind)),
        h("td", {}, Object.entries(counts).map(([s, n]) => `${t(`outcome.${s}`)} ${n}`).join(" · ")))))) : null);
  });
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  if (state.stations.length) setTimeout(load);
  return form;
}

// -- the event engine: workers, queue, and deliveries that used up their tries ----------------

// Delivery id -> "retry" | "discard" while its confirmation is open: it survives the redraws.
const confirming = new Map();
let engineShown = "";

async function loadEngine() {
  const [health, letters] = await Promise.all([api.get("/v1/ops/engine"), api.all("/v1/ops/dead-letters?limit=100", 200)]);
  state.engine = health;
  state.deadLetters = letters;
  for (const id of confirming.keys()) if (!letters.some((d) => d.id === id)) confirming.delete(id);
  // Redrawn only when something changed, so that a button is not swapped under the operator's pointer.
  const shown = JSON.stringify([health, letters]);
  if (shown !== engineShown) { engineShown = shown; drawEngine(); }
}

function engineSection() {
  const reload = h("button", { type: "button", id: "engine-refresh" }, t("ops.engine.refresh"));
  reload.addEventListener("click", () => act(reload, null, loadEngine));
  return h("section", { class: "card", id: "engine", "aria-labelledby": "engine-h" },
    h("div", { class: "detail-head" }, h("h2", { id: "engine-h" }, t("ops.engine.title")), reload),
    h("div", { id: "engine-health", "aria-live": "polite" }),
    h("h3", {}, t("ops.engine.deadLetters")), h("p", { class: "muted" }, t("ops.engine.deadLettersNote")),
    h("div", { id: "dead-letters", class: "table-wrap" }));
}

function drawEngine() {
  const health = document.getElementById("engine-health");
  const wrap = document.getElementById("dead-letters");
  if (!health || !wrap) return;
  const e = state.engine;
  if (e) {
    const age = Math.round(e.oldest_ready_age_s);
    fill(health, h("dl", { class: "facts" },
      h("dt", {}, t("ops.engine.workers")), h("dd", { id: "engine-workers" },
        h("span", { class: `pill ${e.workers ? "ok" : "bad"}` }, e.workers ? t("ops.engine.workersAlive", { n: e.workers }) : t("ops.engine.noWorker"))),
      h("dt", {}, t("ops.engine.queued")), h("dd", { id: "engine-queued" }, t("ops.engine.jobs", { n: e.queued })),
      h("dt", {}, t("ops.engine.oldest")), h("dd", { id: "engine-oldest" },
        h("span", { class: `pill ${age > 30 ? "warn" : "ok"}` }, t("ops.engine.seconds", { n: age }))),
      h("dt", {}, t("ops.engine.deadCount")), h("dd", { id: "engine-dead" },
        h("span", { class: `pill ${e.dead_letters ? "bad" : "ok"}` }, String(e.dead_letters)))));
  }
  if (!state.deadLetters.length) { fill(wrap, h("p", { class: "muted", id: "no-dead-letters" }, t("ops.engine.noDeadLetters"))); return; }
  fill(wrap, h("table", { id: "dead-letter-table" },
    h("thead", {}, h("tr", {}, ["ops.engine.failedAt", "ops.engine.topic", "ops.engine.subscriber", "ops.engine.order",
      "ops.engine.attempts", "ops.engine.lastError", "ops.engine.actions"].map((k) => h("th", { scope: "col" }, t(k))))),
    h("tbody", {}, state.deadLetters.map(deadLetterRow))));
}

function deadLetterRow(d) {
  const asking = confirming.get(d.id);
  const ask = (action) => {
    confirming.set(d.id, action);
    drawEngine();
    document.getElementById(`dead-confirm-${d.id}`)?.focus();
  };
  let actions;
  if (asking) {
    const yes = h("button", { type: "button", class: asking === "retry" ? "primary" : "danger", id: `dead-confirm-${d.id}` },
      t(`ops.engine.confirm.${asking}`));
    const no = h("button", { type: "button", id: `dead-cancel-${d.id}` }, t("ops.engine.keep"));
    yes.addEventListener("click", async () => {
      const done = await act(yes, null, async () => {
        await api.post(`/v1/ops/dead-letters/${d.id}/${asking}`, {});
        return true;
      });
      confirming.delete(d.id);
      if (done) toast(t(`ops.engine.done.${asking}`));
      await loadEngine().catch(() => {});  // gone from the list, or (another operator was first) as it is now
      drawEngine();
    });
    no.addEventListener("click", () => { confirming.delete(d.id); drawEngine(); });
    actions = [h("span", { class: "question" }, t(`ops.engine.ask.${asking}`)), yes, no];
  } else {
    const retry = h("button", { type: "button", id: `dead-retry-${d.id}` }, t("ops.engine.retry"));
    const discard = h("button", { type: "button", id: `dead-discard-${d.id}` }, t("ops.engine.discard"));
    retry.addEventListener("click", () => ask("retry"));
    discard.addEventListener("click", () => ask("discard"));
    actions = [retry, discard];
  }
  const error = d.last_error || "—";
  const topic = slug("ops.engine.topicName", d.topic);
  return h("tr", { dataset: { deadLetter: d.id } },
    h("td", {}, when(d.finished_at || d.created_at)),
    h("td", {}, topic === d.topic ? h("code", {}, d.topic) : [topic, h("div", {}, h("code", { class: "muted" }, d.topic))]),
    h("td", {}, slug("ops.engine.subscriberName", d.subscriber)),
    h("td", {}, d.order_id ? h("code", { title: d.order_id }, d.order_id.slice(0, 8)) : "—"),
    h("td", { class: "num" }, d.deferrals ? t("ops.engine.triesAndWaits", { n: d.attempts, waits: d.deferrals }) : String(d.attempts)),
    h("td", { class: "dead-error" }, h("code", { title: error },
      error.length > ERROR_SHOWN_CHARS ? `${error.slice(0, ERROR_SHOWN_CHARS)}…` : error)),
    h("td", {}, h("div", { class: "actions dead-actions", role: asking ? "group" : null,
      "aria-label": asking ? t(`ops.engine.ask.${asking}`) : null }, actions)));
}

// -- meters: quarantine, valve commands that gave up, one device's readings and last frames ---

function metersSection() {
  const quarantine = h("div", { id: "meter-quarantine", class: "table-wrap" });
  const failed = h("div", { id: "meter-failed-commands", class: "table-wrap" });
  const device = h("select", { id: "meter-device" });
  const readings = h("div", { id: "meter-readings", class: "table-wrap", "aria-live": "polite" });
  const frames = h("div", { id: "meter-frames", class: "table-wrap" });
  const more = h("button", { type: "button", class: "hidden", id: "meter-more" }, t("meters.more"));
  const error = h("p", { class: "error", role: "alert" });
  let cursor = null;
  const cell = (value) => h("td", {}, value === null || value === undefined ? "—" : String(value));
  const table = (heads, rows) => (rows.length ? h("table", {},
    h("thead", {}, h("tr", {}, heads.map((key) => h("th", { scope: "col" }, t(key))))), h("tbody", {}, rows))
    : h("p", { class: "muted" }, t("ops.none")));

  async function loadLists() {
    const [q, c, devices] = await Promise.all([api.get("/v1/telemetry-quarantine?limit=50"),
      api.get("/v1/valve-commands?status=failed&limit=50"), api.get("/v1/devices?limit=200")]);
    fill(quarantine, table(["meters.received", "meters.device", "meters.source", "meters.reason"],
      q.data.map((r) => h("tr", {}, cell(when(r.received_at)), cell(r.external_id), cell(r.source), cell(r.reason)))));
    fill(failed, table(["meters.created", "meters.device", "meters.channel", "meters.attempts", "meters.lastError"],
      c.data.map((r) => h("tr", {}, cell(when(r.created_at)), cell(r.external_id), cell(t(`meters.channel.${r.channel}`)),
        cell(r.attempts), cell(r.last_error)))));
    fill(device, new Option(t("meters.chooseDevice"), ""),
      ...devices.data.map((d) => new Option(`${d.external_id} · ${t(`meters.kind.${d.kind}`)}`, d.id)));
  }

  async function loadReadings(append) {
    if (!device.value) return;
    const page = await api.get(`/v1/devices/${device.value}/readings?limit=50${append && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    cursor = page.next_cursor;
    more.classList.toggle("hidden", !cursor);
    const rows = page.data.map((r) => h("tr", {}, cell(when(r.read_at)), cell(r.volume_m3), cell(r.lel_pct), cell(r.valve),
      cell(r.alarm === null ? null : t(r.alarm ? "common.yes" : "common.no")),
      cell(r.battery_low === null ? null : t(r.battery_low ? "common.yes" : "common.no"))));
    const body = readings.querySelector("tbody");
    if (append && body) body.append(...rows);
    else fill(readings, table(["meters.readAt", "meters.volume", "meters.lel", "meters.valve", "meters.alarm", "meters.battery"], rows));
    if (!append) {
      const last = await api.get(`/v1/devices/${device.value}/frames?limit=20`);
      fill(frames, table(["meters.received", "meters.outcome", "meters.raw"], last.data.map((f) => h("tr", {},
        cell(when(f.received_at)), cell(f.outcome.startsWith("quarantined") ? `${t("meters.quarantined")} (${f.outcome.slice(13)})` : t("meters.stored")),
        h("td", {}, h("code", {}, f.raw ?? "—"))))));
    }
  }

  device.addEventListener("change", () => { cursor = null; act(null, error, () => loadReadings(false)); });
  more.addEventListener("click", () => act(more, error, () => loadReadings(true)));
  setTimeout(() => loadLists().catch((e) => toast(errorText(e))));
  return h("div", { class: "grid-2" },
    h("section", { class: "card", "aria-labelledby": "meters-q-h" },
      h("h2", { id: "meters-q-h" }, t("meters.quarantine")), quarantine,
      h("h3", {}, t("meters.failedCommands")), failed),
    h("section", { class: "card", "aria-labelledby": "meters-d-h" },
      h("h2", { id: "meters-d-h" }, t("meters.deviceHistory")), field("meter-device", "meters.device", device), error,
      readings, h("div", { class: "actions" }, more), h("h3", {}, t("meters.lastFrames")), frames));
}
