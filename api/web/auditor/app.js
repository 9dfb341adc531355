// The auditor's console: settlements with filters and totals, one settlement's evidence on one
// page (with the job's photos, and as an archive to keep), CSV exports, and the ledger's
// hash-chain check. Read-only (every read is logged server-side).
import { t } from "../shared/i18n.js";
import { jobPhotoThumbs } from "../shared/photos.js";
import { startApp } from "../shared/shell.js";
import { act, field, fill, h, kindText, money, reasonText, statusText, when } from "../shared/ui.js";

const STATUSES = ["held", "accrued", "transfer_pending", "transferred"];
const main = document.getElementById("main");
const state = { stations: [], rows: [], selected: null, filters: { from: "", to: "", status: "", station: "", technician: "", adjusted: "", held: "" } };
let api;

startApp("auditor", ["auditor", "admin"], {
  boot: async (client) => {
    api = client;
    state.stations = (await api.get("/v1/stations")).data;
    render();
    await search();
  },
  rerender: () => { render(); drawTable(); if (state.selected) showEvidence(state.selected); },
});

const dayStart = (date) => (date ? new Date(`${date}T00:00:00`).toISOString() : "");
const dayEnd = (date) => (date ? new Date(new Date(`${date}T00:00:00`).getTime() + 86400000).toISOString() : "");

function render() {
  const f = state.filters;
  const input = (key, attrs) => {
    const el = h("input", { ...attrs, value: f[key] });
    el.addEventListener("change", () => { f[key] = el.value; });
    return el;
  };
  const select = (key, options) => {
    const el = h("select", {}, options.map(([value, label]) => new Option(label, value, false, value === f[key])));
    el.addEventListener("change", () => { f[key] = el.value; });
    return el;
  };
  const yesNo = [["", t("auditor.any")], ["true", t("common.yes")], ["false", t("common.no")]];
  const searchButton = h("button", { type: "submit", class: "primary", id: "search" }, t("auditor.search"));
  const error = h("p", { class: "error", role: "alert", id: "search-error" });
  const filters = h("form", { class: "card", id: "filters", "aria-labelledby": "filters-h" },
    h("h2", { id: "filters-h" }, t("auditor.settlements")),
    h("div", { class: "row" },
      h("div", {}, field("f-from", "auditor.from", input("from", { type: "date" }))),
      h("div", {}, field("f-to", "auditor.to", input("to", { type: "date" }))),
      h("div", {}, field("f-status", "auditor.status", select("status", [["", t("auditor.any")], ...STATUSES.map((s) => [s, t(`settlement.${s}`)])]))),
      h("div", {}, field("f-station", "auditor.station", select("station", [["", t("auditor.any")], ...state.stations.map((s) => [s.id, s.name])]))),
      h("div", {}, field("f-technician", "auditor.technician", input("technician", { placeholder: "UUID", pattern: "[0-9a-fA-F-]{36}" }))),
      h("div", {}, field("f-adjusted", "auditor.adjusted", select("adjusted", yesNo))),
      h("div", {}, field("f-held", "auditor.held", select("held", yesNo)))),
    error, h("div", { class: "actions" }, searchButton));
  filters.addEventListener("submit", (event) => { event.preventDefault(); act(searchButton, error, search); });

  const verifyButton = h("button", { type: "button", class: "primary", id: "verify-chain" }, t("auditor.verifyChain"));
  const verifyResult = h("p", { id: "chain-result", "aria-live": "polite" });
  verifyButton.addEventListener("click", () => act(verifyButton, verifyResult, async () => {
    const report = await api.get("/v1/audit/ledger/verify");
    fill(verifyResult, h("span", { class: `pill ${report.ok ? "ok" : "bad"}` },
      report.ok ? t("auditor.chainOk", { n: report.checked }) : t("auditor.chainBroken", { n: report.broken.length })),
      report.ok ? "" : h("pre", { class: "json" }, JSON.stringify(report.broken, null, 2)));
  }));

  const exportError = h("p", { class: "error", role: "alert" });
  const exportButton = (name, id) => {
    const button = h("button", { type: "button", id }, t(`auditor.export.${name}`));
    button.addEventListener("click", () => act(button, exportError, () => download(name)));
    return button;
  };
  fill(main, filters,
    h("section", { class: "card", "aria-labelledby": "table-h" }, h("h2", { id: "table-h" }, t("auditor.results")),
      h("div", { class: "table-wrap", id: "table" })),
    h("div", { class: "grid-2" },
      h("section", { class: "card", "aria-labelledby": "chain-h" }, h("h2", { id: "chain-h" }, t("auditor.chain")),
        h("p", { class: "muted" }, t("auditor.chainHint")), h("div", { class: "actions" }, verifyButton), verifyResult),
      h("section", { class: "card", "aria-labelledby": "export-h" }, h("h2", { id: "export-h" }, t("auditor.exports")),
        h("p", { class: "muted" }, t("auditor.exportHint")),
        h("div", { class: "actions" }, exportButton("ledger", "export-ledger"), exportButton("settlements", "export-settlements")), exportError,
        h("p", { class: "muted" }, t("auditor.noReconcile")))),
    h("section", { class: "card hidden", id: "evidence", "aria-live": "polite" }));
}

function query() {
  const f = state.filters;
  const params = new URLSearchParams({ limit: "200" });
  if (f.from) params.set("from", dayStart(f.from));
  if (f.to) params.set("to", dayEnd(f.to));
  if (f.status) params.set("status", f.status);
  if (f.station) params.set("station_id", f.station);
  if (f.technician) params.set("technician_id", f.technician.trim());
  if (f.adjusted) params.set("adjusted", f.adjusted);
  if (f.held) params.set("held", f.held);
  return params;
}

async function search() {
  state.rows = await api.all(`/v1/settlements?${query()}`, 2000);
  drawTable();
}

const MONEY_COLUMNS = ["base_minor", "adjustment_minor", "fee_minor", "payout_minor", "clawback_minor"];

function drawTable() {
  const wrap = document.getElementById("table");
  if (!wrap) return;
  if (!state.rows.length) { fill(wrap, h("p", { class: "muted" }, t("auditor.none"))); return; }
  const stationName = (id) => state.stations.find((s) => s.id === id)?.name ?? "";
  const currency = state.rows[0].currency;
  const sameCurrency = state.rows.every((r) => r.currency === currency);
  const cell = (minor, cur) => h("td", { class: "num" }, money({ amount_minor: minor, currency: cur }));
  fill(wrap, h("table", { id: "settlements" },
    h("caption", { class: "sr-only" }, t("auditor.results")),
    h("thead", {}, h("tr", {}, ["auditor.created", "auditor.order", "auditor.station", "auditor.status", "auditor.stars"]
      .map((k) => h("th", { scope: "col" }, t(k))), MONEY_COLUMNS.map((c) => h("th", { scope: "col", class: "num" }, t(`auditor.col.${c}`))))),
    h("tbody", {}, state.rows.map((r) => {
      const row = h("tr", { class: `clickable${r.id === state.selected ? " selected" : ""}`, tabindex: "0", dataset: { settlement: r.id, order: r.order_id } },
        h("td", {}, when(r.created_at)), h("td", {}, h("code", {}, r.order_id.slice(0, 8))), h("td", {}, stationName(r.station_id)),
        h("td", {}, t(`settlement.${r.status}`)), h("td", {}, "★".repeat(r.stars)), MONEY_COLUMNS.map((c) => cell(r[c], r.currency)));
      const open = () => showEvidence(r.id);
      row.addEventListener("click", open);
      row.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
      return row;
    })),
    // Totals only add up in one currency.
    sameCurrency ? h("tfoot", {}, h("tr", { id: "totals" }, h("td", { colspan: "5" }, t("auditor.totals", { n: state.rows.length })),
      MONEY_COLUMNS.map((c) => cell(state.rows.reduce((sum, r) => sum + r[c], 0), currency)))) : null));
}

async function showEvidence(id) {
  state.selected = id;
  drawTable();
  const section = document.getElementById("evidence");
  const bundle = await api.get(`/v1/settlements/${id}/evidence`);
  const s = bundle.settlement;
  const dl = (pairs) => h("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [h("dt", {}, t(k)), h("dd", {}, v ?? "—")]));
  section.classList.remove("hidden");
  const archiveError = h("p", { class: "error", role: "alert" });
  const archive = h("button", { type: "button", id: "download-evidence" }, t("auditor.downloadBundle"));
  archive.addEventListener("click", () => act(archive, archiveError, () => save(`/v1/settlements/${id}/evidence.zip`, `evidence-${id}.zip`)));
  fill(section, 
    h("h2", {}, t("auditor.evidence"), " ", h("code", {}, id)),
    h("div", { class: "actions" }, archive), archiveError,
    h("div", { class: "grid-2" },
      h("div", {}, h("h3", {}, t("auditor.order")), dl([
        ["auditor.order", bundle.order.id], ["customer.kind", kindText(bundle.order.kind)], ["auditor.status", statusText(bundle.order.status)],
        ["customer.estimate", money({ amount_minor: bundle.order.price_estimate_minor, currency: bundle.order.currency })],
        ["auditor.technician", bundle.order.technician_id], ["auditor.stars", `${bundle.review.stars} ★`]])),
      h("div", {}, h("h3", {}, t("auditor.arithmetic")), dl([
        ["auditor.status", t(`settlement.${s.status}`)], ["auditor.ruleVersion", String(s.rule_version)],
        ...MONEY_COLUMNS.map((c) => [`auditor.col.${c}`, money({ amount_minor: s[c], currency: s.currency })])]),
        h("pre", { class: "json" }, JSON.stringify(bundle.arithmetic, null, 2)))),
    h("div", { id: "evidence-photos-part" }, h("h3", {}, t("auditor.photos")), h("p", { class: "muted" }, t("auditor.photosHint")),
      evidencePhotos(bundle)),
    h("h3", {}, t("auditor.timeline")),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["auditor.at", "auditor.step", "auditor.actor", "auditor.details"].map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", {}, bundle.timeline.map((e) => h("tr", {}, h("td", {}, when(e.at)), h("td", {}, `${e.from ? statusText(e.from) : "—"} → ${statusText(e.to)}`),
        h("td", {}, e.actor_role), h("td", {}, Object.keys(e.payload || {}).length ? h("code", {}, JSON.stringify(e.payload)) : e.reason ? reasonText(e.reason) : "")))))),
    h("h3", {}, t("auditor.payment")),
    dl([["auditor.hold", bundle.provider_ids.hold], ["auditor.charge", bundle.provider_ids.charge],
      ["auditor.account", bundle.provider_ids.connected_account], ["auditor.transfer", bundle.provider_ids.transfer],
      ["auditor.paymentStatus", bundle.payment?.status]]),
    h("h3", {}, t("auditor.ledger")),
    h("div", { class: "table-wrap" }, h("table", { id: "ledger" }, h("thead", {}, h("tr", {},
      ["auditor.seq", "auditor.entry", "auditor.postings", "auditor.hash"].map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", {}, bundle.ledger.map((e) => h("tr", {}, h("td", {}, String(e.seq)), h("td", {}, e.kind, h("div", { class: "muted" }, when(e.created_at))),
        h("td", {}, h("ul", { class: "plain" }, e.postings.map((p) => h("li", {}, `${p.account}: ${money({ amount_minor: p.amount_minor, currency: p.currency })}`)))),
        h("td", {}, h("code", {}, e.content_hash.slice(0, 16), "…"))))))),
    h("h3", {}, t("auditor.rules")),
    h("pre", { class: "json" }, JSON.stringify(bundle.rules, null, 2)));
  section.scrollIntoView({ behavior: "smooth", block: "start" });
}

/** The photos the report and its hazards name, each with what it shows and its hash. */
function evidencePhotos(bundle) {
  if (!bundle.photos.length) return h("p", { class: "muted", id: "evidence-photos" }, t("auditor.noPhotos"));
  return h("ul", { class: "plain", id: "evidence-photos" }, bundle.photos.map((p) => h("li", { dataset: { sha256: p.sha256 } },
    jobPhotoThumbs(api, bundle.order.id, [p.sha256], "evidence-photo"),
    h("div", {}, p.shows.map(photoShows).join(" · ")),
    h("code", { class: "muted", title: p.sha256 }, `SHA-256 ${p.sha256.slice(0, 16)}…`))));
}

function photoShows(shows) {
  if (shows.what === "work") return t("auditor.photoWork");
  const category = t(`hazard.${shows.category}`);
  return shows.what === "hazard" ? t("auditor.photoHazard", { category }) : t("auditor.photoFix", { category });
}

async function download(name) {
  const f = state.filters;
  const end = f.to ? dayEnd(f.to) : new Date(Date.now() + 60000).toISOString();
  const start = f.from ? dayStart(f.from) : new Date(Date.now() - 30 * 86400000).toISOString();
  await save(`/v1/audit/${name}.csv?${new URLSearchParams({ from: start, to: end })}`, `${name}.csv`);
}

/** The exports need the bearer token, so the file is fetched and handed over as a download. */
async function save(path, filename) {
  const response = await api.raw(path);
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
