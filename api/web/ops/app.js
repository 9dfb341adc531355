// The operations console: open orders on a map (emergencies first) with the technicians on
// them, unfulfilled and late orders, certifications to verify, open hazards, station KPIs.
import { t } from "../shared/i18n.js";
import { COLORS, L, createMap, dot, fit, line, stationLayer } from "../shared/map.js";
import { startApp } from "../shared/shell.js";
import { LiveSocket } from "../shared/socket.js";
import { act, field, fill, h, kindText, statusText, toast, when } from "../shared/ui.js";

const OPEN = ["created", "matching", "offered", "accepted", "en_route", "arrived", "in_service"];
const TRACKED = ["accepted", "en_route", "arrived", "in_service"];
const PRIORITY_RANK = { emergency: 0, urgent: 1, routine: 2 };
const main = document.getElementById("main");
const state = { stations: [], open: [], unfulfilled: [], certs: [], hazards: [], onDuty: [], positions: new Map() };
let api;
let map;
let orderLayer;
let techLayer;
const sockets = new Map();  // order id -> LiveSocket following its technician

startApp("ops", ["admin"], {
  boot: async (client) => {
    api = client;
    state.stations = (await api.get("/v1/stations")).data;
    render();
    await refresh();
    setInterval(refresh, 15000);
  },
  rerender: () => { render(); draw(); },
});

function render() {
  fill(main, 
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
    metersSection());
  map = createMap(document.getElementById("ops-map"), { zoom: 12 });
  const stations = stationLayer(state.stations).addTo(map);
  orderLayer = L.layerGroup().addTo(map);
  techLayer = L.layerGroup().addTo(map);
  fit(map, [stations], 13);
}

async function refresh() {
  const [open, unfulfilled, certs, hazards, onDuty] = await Promise.all([
    Promise.all(OPEN.map((s) => api.all(`/v1/orders?status=${s}&limit=200`, 500))).then((lists) => lists.flat()),
    api.get("/v1/orders?status=unfulfilled&limit=50"),
    api.get("/v1/certifications?status=pending&limit=100"),
    api.get("/v1/hazards?limit=200"),
    api.get("/v1/operations/technicians"),
  ]);
  state.onDuty = onDuty.data;
  state.open = open.sort((a, b) => PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] || a.sla_deadline.localeCompare(b.sla_deadline));
  state.unfulfilled = unfulfilled.data;
  state.certs = certs.data;
  state.hazards = hazards.data.sort((a, b) => b.age_days - a.age_days || a.deadline_at.localeCompare(b.deadline_at));
  follow();
  draw();
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
        if (message.type === "status" && !TRACKED.includes(message.status)) refresh();
      },
    }));
  }
}

function draw() {
  drawMap();
  const now = new Date().toISOString();
  const orderTable = (rows, id) => rows.length ? h("table", { id }, h("thead", {}, h("tr", {},
    ["ops.priority", "ops.kind", "ops.status", "ops.created", "ops.sla"].map((k) => h("th", { scope: "col" }, t(k))))),
  h("tbody", {}, rows.map((o) => h("tr", { dataset: { order: o.id } },
    h("td", {}, h("span", { class: `pill ${o.priority}` }, t(`priority.${o.priority}`))), h("td", {}, kindText(o.kind)),
    h("td", {}, statusText(o.status)), h("td", {}, when(o.created_at)),
    h("td", {}, o.sla_deadline < now && OPEN.includes(o.status) ? h("span", { class: "pill bad" }, `${t("ops.late")} ${when(o.sla_deadline)}`) : when(o.sla_deadline))))))
    : h("p", { class: "muted" }, t("ops.none"));
  fill(document.getElementById("open-orders"), orderTable(state.open, "open-table"));
  const late = state.open.filter((o) => o.sla_deadline < now);
  fill(document.getElementById("late-orders"), orderTable([...state.unfulfilled, ...late], "late-table"));
  drawCerts();
  fill(document.getElementById("hazards"), state.hazards.length ? h("table", { id: "hazard-table" },
    h("thead", {}, h("tr", {}, ["ops.age", "ops.category", "ops.severity", "ops.deadline", "ops.followup"].map((k) => h("th", { scope: "col" }, t(k))))),
    h("tbody", {}, state.hazards.map((z) => h("tr", {}, h("td", { class: "num" }, t("ops.days", { n: z.age_days })),
      h("td", {}, t(`hazard.${z.category}`), z.description ? h("div", { class: "muted" }, z.description) : null),
      h("td", {}, h("span", { class: `pill ${z.severity === "critical" ? "bad" : "warn"}` }, t(`severity.${z.severity}`))),
      h("td", {}, z.deadline_at < now ? h("span", { class: "pill bad" }, when(z.deadline_at)) : when(z.deadline_at)),
      h("td", {}, z.followup_order_id ? h("code", {}, z.followup_order_id.slice(0, 8)) : "—")))))
    : h("p", { class: "muted" }, t("ops.none")));
}

function drawMap() {
  if (!orderLayer) return;
  orderLayer.clearLayers();
  techLayer.clearLayers();
  for (const tech of state.onDuty) {
    if (tech.position) dot(tech.position, { color: COLORS.technician, radius: 5, label: `${tech.name} · ${t(`tech.${tech.status}`)}` }).addTo(techLayer);
  }
  for (const o of state.open) {
    dot(o.location, { color: COLORS[o.priority], radius: o.priority === "emergency" ? 11 : 8,
      label: `${t(`priority.${o.priority}`)} · ${kindText(o.kind)} · ${statusText(o.status)}` }).addTo(orderLayer);
    const position = state.positions.get(o.id);
    if (position) {
      dot(position, { color: COLORS.technician, radius: 7, label: t("ops.technicianOn", { kind: kindText(o.kind) }) }).addTo(techLayer);
      line([position, o.location]).addTo(techLayer);
    }
  }
}

function drawCerts() {
  const wrap = document.getElementById("certs");
  if (!state.certs.length) { fill(wrap, h("p", { class: "muted" }, t("ops.noCerts"))); return; }
  fill(wrap, h("table", { id: "cert-table" }, h("thead", {}, h("tr", {},
    ["ops.certKind", "ops.certNumber", "ops.issuer", "ops.validity", "ops.decide"].map((k) => h("th", { scope: "col" }, t(k))))),
  h("tbody", {}, state.certs.map((c) => {
    const reason = h("input", { maxlength: 500, id: `reason-${c.id}` });
    const verify = h("button", { type: "button", class: "ok" }, t("ops.verify"));
    const reject = h("button", { type: "button", class: "danger" }, t("ops.reject"));
    const decide = (button, decision) => act(button, null, async () => {
      await api.post(`/v1/certifications/${c.id}/${decision}`, reason.value.trim() ? { reason: reason.value.trim() } : {});
      toast(t(`ops.decided.${decision}`));
      state.certs = state.certs.filter((x) => x.id !== c.id);
      drawCerts();
    });
    verify.addEventListener("click", () => decide(verify, "verify"));
    reject.addEventListener("click", () => decide(reject, "reject"));
    return h("tr", {}, h("td", {}, t(`cert.${c.kind}`)), h("td", {}, c.number), h("td", {}, c.issuer),
      h("td", {}, `${when(c.valid_from)} – ${when(c.valid_until)}`),
      h("td", {}, h("label", { for: reason.id, class: "sr-only" }, t("ops.reason")), reason, h("div", { class: "actions" }, verify, reject)));
  }))));
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
  setTimeout(() => loadLists().catch((e) => toast(e.message)));
  return h("div", { class: "grid-2" },
    h("section", { class: "card", "aria-labelledby": "meters-q-h" },
      h("h2", { id: "meters-q-h" }, t("meters.quarantine")), quarantine,
      h("h3", {}, t("meters.failedCommands")), failed),
    h("section", { class: "card", "aria-labelledby": "meters-d-h" },
      h("h2", { id: "meters-d-h" }, t("meters.deviceHistory")), field("meter-device", "meters.device", device), error,
      readings, h("div", { class: "actions" }, more), h("h3", {}, t("meters.lastFrames")), frames));
}
