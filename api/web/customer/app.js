// The customer's app: addresses, technicians nearby, placing an order or booking a visit for a
// window, following it live, checking the technician at the door, approving a price change,
// rating, hazards found.
import { t } from "../shared/i18n.js";
import { COLORS, createMap, distanceM, dot, fit, latLng, line, pin, stationLayer, toPoint } from "../shared/map.js";
import { startApp } from "../shared/shell.js";
import { LiveSocket } from "../shared/socket.js";
import { renderHistory } from "./history.js";
import { renderTechnicianProfile } from "./technician.js";
import { jobPhotoThumbs } from "../shared/photos.js";
import { gasLeakAdvice, hotlineLinks, openSmellGas, safetyCard, smellGasButton, stepsList } from "../shared/smellgas.js";
import { act, dayIn, errorText, field, fill, h, kindText, money, oneAtATime, problemSlug, reasonText, statusText, toast, UserError, when, windowText } from "../shared/ui.js";

const STEPS = ["created", "matching", "offered", "accepted", "en_route", "arrived", "in_service", "completed", "reviewed", "settled"];
const ON_JOB = ["accepted", "en_route", "arrived", "in_service"];
const REVIEW_TAGS = ["on_time", "polite", "clean_work", "explained_hazard", "fixed_first_time", "showed_credentials",
  "late", "rude", "messy", "left_unresolved"];
const main = document.getElementById("main");
const state = { addresses: [], kinds: [], stations: [], selected: null, nearby: [], orders: [] };
let api;
let view = null;  // the open order view, closed when leaving it

// "I smell gas" sits above every screen, the sign-in form included.
main.before(h("div", { class: "smellgas-bar" }, smellGasButton(() => openGasLeak())));

startApp("customer", ["customer"], {
  boot: async (client) => {
    api = client;
    const [kinds, stations] = await Promise.all([api.get("/v1/service-kinds"), api.get("/v1/stations")]);
    state.kinds = kinds.data.filter((k) => k.active);
    state.stations = stations.data;
    window.addEventListener("hashchange", route);
    await route();
    await tellBookingNotices();
    // Back on screen (say, from the text message telling him): the notices, and the page redrawn
    // with the new window.
    document.addEventListener("visibilitychange", async () => {
      if (document.visibilityState === "visible" && await tellBookingNotices()) await route();
    });
  },
  rerender: () => route(),
  signUp: "customer",
  orderHref: (orderId) => `#order/${orderId}`,
});

// Bumped by every navigation: a page still loading for an earlier one must not draw over it.
let routeSeq = 0;

async function route() {
  const seq = ++routeSeq;
  view?.close();
  view = null;
  const match = location.hash.match(/^#order\/([0-9a-f-]{36})$/);
  const receipt = location.hash.match(/^#order\/([0-9a-f-]{36})\/receipt$/);
  if (match) view = await openOrder(match[1]);
  else if (receipt) await renderReceipt(receipt[1], seq);
  else if (location.hash === "#history") await renderHistory(main, api, () => seq === routeSeq);
  else await renderHome(seq);
  if (location.hash === "#gas-leak") {  // from the landing page's "sign in to report"
    history.replaceState(null, "", "#");
    await openGasLeak();
  }
}

// -- home: addresses, map of technicians nearby, new order, my orders ----------------------

async function renderHome(seq = routeSeq) {
  const [addresses, orders] = await Promise.all([api.all("/v1/customers/me/addresses"), api.get("/v1/orders?limit=20")]);
  if (seq !== routeSeq) return;  // the customer went elsewhere meanwhile
  state.addresses = addresses;
  state.orders = orders.data;
  if (!state.addresses.some((a) => a.id === state.selected)) state.selected = state.addresses[0]?.id ?? null;

  const mapEl = h("div", { class: "map", id: "home-map", role: "img", "aria-label": t("customer.mapLabel") });
  const nearbyList = h("ul", { class: "plain", id: "nearby-list" });
  fill(main, 
    h("div", { class: "grid-2" }, addressCard(), h("section", { class: "card", "aria-labelledby": "nearby-h" },
      h("h2", { id: "nearby-h" }, t("customer.nearby")), mapEl, h("p", { class: "muted" }, t("customer.nearbyHint")), nearbyList)),
    h("div", { class: "grid-2" }, orderForm(), bookingForm()), ordersCard());
  await showSafetyNotices();

  const map = createMap(mapEl);
  const stations = stationLayer(state.stations).addTo(map);
  const techLayer = window.L.layerGroup().addTo(map);
  let addressDot = null;
  const address = () => state.addresses.find((a) => a.id === state.selected);
  const drawAddress = () => {
    addressDot?.remove();
    addressDot = address() ? dot(address().location, { label: address().label }).addTo(map) : null;
    fit(map, addressDot ? [addressDot] : [stations], 15);
  };
  drawAddress();
  mountAddressPin();

  async function refreshNearby() {
    const a = address();
    if (!a) return;
    const found = await api.get(`/v1/technicians/nearby?address_id=${a.id}`).catch(() => ({ data: [] }));
    state.nearby = found.data;
    techLayer.clearLayers();
    for (const tech of state.nearby) dot(tech.position, { color: COLORS.technician, radius: 7, label: tech.name }).addTo(techLayer);
    fill(nearbyList, ...(state.nearby.length ? state.nearby.map((tech) => h("li", {},
      h("strong", {}, tech.name), " ", h("span", { class: `pill ${tech.status}` }, t(`tech.${tech.status}`)),
      h("div", { class: "muted" }, [tech.station, `${t("customer.about")} ${tech.distance_m} m`,
        tech.certifications.map((c) => t(`cert.${c}`)).join("、")].filter(Boolean).join(" · ")))) :
      [h("li", { class: "muted" }, t("customer.noneNearby"))]));
    const chosen = document.getElementById("order-technician");
    if (chosen) {
      const keep = chosen.value;
      fill(chosen, new Option(t("customer.anyTechnician"), ""),
        ...state.nearby.map((tech) => new Option(`${tech.name} · ${tech.distance_m} m`, tech.id, false, tech.id === keep)));
    }
  }
  document.getElementById("address-select")?.addEventListener("change", (event) => {
    state.selected = event.target.value;
    drawAddress();
    refreshNearby();
    drawLeakAdvice(document.getElementById("order-leak-advice"));
  });
  await refreshNearby();
  const timer = setInterval(refreshNearby, 10000);
  view = { close: () => clearInterval(timer) };
}

// A Chinese address, largest first: [part, max length (the column's), required, autocomplete].
const ADDRESS_PARTS = [["province", 30, true, "address-level1"], ["city", 30, true, "address-level2"],
  ["district", 30, true, "address-level3"], ["street", 100, true, "address-line1"], ["community", 60, false, "address-line2"],
  ["building", 20, false, "off"], ["unit", 20, false, "off"], ["room", 20, false, "off"]];
let addressPin = null;  // GeoJSON (WGS-84) where the new address's pin stands

// The new address's pin starts on the selected address (a neighbour's door is usually close), else
// on the first station; the customer drags it, or taps the map, to his own building.
function mountAddressPin() {
  const element = document.getElementById("addr-map");
  if (!element) return;
  const map = createMap(element);
  const start = state.addresses.find((a) => a.id === state.selected)?.location ?? state.stations[0]?.location
    ?? toPoint(map.getCenter());
  map.setView(latLng(start), 17);
  const shown = document.getElementById("addr-pin-at");
  const place = (point) => {
    addressPin = point;
    const [lon, lat] = point.coordinates;
    shown.textContent = t("customer.pinAt", { lat: lat.toFixed(6), lon: lon.toFixed(6) });
  };
  pin(map, start, place).addTo(map);
  place(start);
}

function addressCard() {
  const select = h("select", {}, state.addresses.map((a) => new Option(`${a.label} · ${a.line}`, a.id, false, a.id === state.selected)));
  const error = h("p", { class: "error", role: "alert" });
  const label = h("input", { required: true, maxlength: 60 });
  const parts = Object.fromEntries(ADDRESS_PARTS.map(([name, maxlength, required, autocomplete]) =>
    [name, h("input", { maxlength, required, autocomplete })]));
  const part = (name) => field(`addr-${name}`, `customer.addr.${name}`, parts[name]);
  const save = h("button", { type: "submit", class: "primary", id: "addr-save" }, t("customer.addAddress"));
  const form = h("form", { id: "address-form" },
    h("h3", {}, t("customer.newAddress")),
    field("addr-label", "customer.addressLabel", label),
    h("div", { class: "row" }, ["province", "city", "district"].map((name) => h("div", {}, part(name)))),
    part("street"), part("community"),
    h("div", { class: "row" }, ["building", "unit", "room"].map((name) => h("div", {}, part(name)))),
    h("p", { class: "muted" }, t("customer.pickOnMap")),
    h("div", { class: "map", id: "addr-map", role: "img", "aria-label": t("customer.pinMapLabel") }),
    h("p", { class: "muted", id: "addr-pin-at", "aria-live": "polite" }),
    error, h("div", { class: "actions" }, save));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // Optional parts left empty are omitted: the server composes the line from what is given.
    const structured = Object.fromEntries(Object.entries(parts).map(([name, input]) => [name, input.value.trim()])
      .filter(([, value]) => value));
    const created = await act(save, error, () => api.post("/v1/customers/me/addresses", {
      label: label.value, structured, location: addressPin }));
    if (created) { state.selected = created.id; toast(t("customer.addressSaved")); renderHome(); }
  });
  return h("section", { class: "card", "aria-labelledby": "addr-h" }, h("h2", { id: "addr-h" }, t("customer.addresses")),
    state.addresses.length ? field("address-select", "customer.serviceAddress", select) : h("p", { class: "notice" }, t("customer.noAddress")),
    form);
}

// The gas-leak advice under the order form names the hotline of the selected address's city.
function drawLeakAdvice(target) {
  const city = state.addresses.find((a) => a.id === state.selected)?.city;
  gasLeakAdvice(city).then((advice) => fill(target, stepsList(advice.steps), hotlineLinks(advice.hotlines)));
}

function kindName(kind) {
  return document.documentElement.lang === "en" ? kind.name : kind.name_zh;
}

function orderForm() {
  const kind = h("select", { required: true }, state.kinds.map((k) => new Option(`${kindName(k)} · ${money(k.base_price)}`, k.code)));
  const description = h("textarea", { maxlength: 2000 });
  const technician = h("select", {}, new Option(t("customer.anyTechnician"), ""));
  const estimate = h("p", { id: "estimate", "aria-live": "polite" });
  const leakAdvice = h("div", { id: "order-leak-advice", class: "hidden" });
  drawLeakAdvice(leakAdvice);
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary", id: "place-order" }, t("customer.placeOrder"));
  const showEstimate = () => {
    const k = state.kinds.find((x) => x.code === kind.value);
    estimate.textContent = k ? `${t("customer.estimate")}: ${money(k.base_price)} · ${t("customer.typical", { min: k.typical_duration_min })}` : "";
    const leak = kind.value === "emergency_leak";
    leakAdvice.classList.toggle("hidden", !leak);
    submit.className = leak ? "danger" : "primary";
  };
  kind.addEventListener("change", showEstimate);
  showEstimate();
  const form = h("form", { class: "card", id: "order-form", "aria-labelledby": "order-h" },
    h("h2", { id: "order-h" }, t("customer.newOrder")),
    field("order-kind", "customer.kind", kind), field("order-description", "customer.description", description),
    field("order-technician", "customer.chooseTechnician", technician), estimate, leakAdvice, error,
    h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!state.selected) { error.textContent = t("customer.noAddress"); return; }
    const body = { kind: kind.value, address_id: state.selected, description: description.value };
    if (technician.value) body.preferred_technician_id = technician.value;
    const order = await act(submit, error, () => api.post("/v1/orders", body));
    if (order) location.hash = `#order/${order.id}`;
  });
  return form;
}

function ordersCard() {
  return h("section", { class: "card", "aria-labelledby": "orders-h" }, h("h2", { id: "orders-h" }, t("customer.myOrders")),
    state.orders.length ? h("ul", { class: "plain" }, state.orders.map((o) => h("li", {},
      h("a", { href: `#order/${o.id}` }, `${kindText(o.kind)} · ${when(o.created_at)}`), " ",
      h("span", { class: "pill" }, statusText(o.status)),
      o.window_start ? h("div", { class: "muted order-window" }, bookedWindow(o)) : null))) : h("p", { class: "muted" }, t("customer.noOrders")),
    state.orders.length ? h("div", { class: "actions" }, h("a", { class: "button", id: "open-history", href: "#history" }, t("history.open"))) : null);
}

// -- booking a visit: a 2-hour window of a day, from the windows some technician has room in ----

// Emergencies and urgent work are sent at once; the server refuses to book them (on-demand-only).
const ON_DEMAND = ["emergency", "urgent"];
const BOOKING_DAYS = 14;  // the server takes up to 30 days ahead; two weeks fit a phone's list

// The order carries no zone: its window shows in the phone's, the city's for a customer at home.
// The window reads on the city's clock (order.timezone), whatever zone the phone is set to.
const bookedWindow = (order) => t("booking.window", { window: windowText(order.window_start, order.window_end, order.timezone, true) });

// Booked visits the service moved, booked for the household (a campaign's inspection) or is
// about to make: said once in his language, with the window in his time, then marked read. The
// open order's socket carries its own; the others are read when the app opens or comes back on
// screen (his app has no socket of its own).
const BOOKING_NOTICES = {
  booking_moved: (range) => t("booking.movedByPlan", { window: range }),
  inspection_booked: (range) => t("booking.inspectionBooked", { window: range }),
  booking_reminder: (range) => t("booking.reminder", { window: range }),
};

/** Toasts the unread booking notices, oldest first; how many there were. */
async function tellBookingNotices() {
  const unread = await api.get("/v1/notifications?unread=true&limit=20").catch(() => ({ data: [] }));
  const notices = unread.data.filter((n) => Object.hasOwn(BOOKING_NOTICES, n.kind)).reverse();
  for (const notice of notices) {
    toast(BOOKING_NOTICES[notice.kind](windowText(notice.payload.window_start, notice.payload.window_end, notice.payload.timezone, true)));
    await api.post(`/v1/notifications/${notice.id}/read`, {}).catch((error) => toast(errorText(error)));
  }
  return notices.length;
}

function bookingForm() {
  const kinds = state.kinds.filter((k) => !ON_DEMAND.includes(k.default_priority));
  const address = h("select", { required: true }, state.addresses.map((a) => new Option(`${a.label} · ${a.line}`, a.id, false, a.id === state.selected)));
  const kind = h("select", { required: true }, kinds.map((k) => new Option(`${kindName(k)} · ${money(k.base_price)}`, k.code)));
  const description = h("textarea", { maxlength: 2000 });
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary", id: "book-visit" }, t("booking.confirm"));
  const picker = slotPicker("booking", () => ({ addressId: address.value, kind: kind.value }));
  address.addEventListener("change", picker.load);
  kind.addEventListener("change", picker.load);
  const form = h("form", { class: "card", id: "booking-form", "aria-labelledby": "booking-h" },
    h("h2", { id: "booking-h" }, t("booking.title")), h("p", { class: "muted" }, t("booking.hint")),
    state.addresses.length ? [field("booking-address", "customer.serviceAddress", address), field("booking-kind", "customer.kind", kind),
      picker.element, field("booking-description", "customer.description", description), error,
      h("div", { class: "actions" }, submit)] : h("p", { class: "notice" }, t("customer.noAddress")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const slot = picker.chosen();
    if (!slot) { error.textContent = t("booking.pickWindow"); return; }
    const order = await act(submit, error, () => api.post("/v1/bookings", { address_id: address.value, kind: kind.value,
      window_start: slot.window_start, description: description.value }));
    if (order) { toast(t("booking.booked")); location.hash = `#order/${order.id}`; }
    else picker.load();  // the window may have filled meanwhile: the windows left
  });
  if (state.addresses.length) picker.load();
  return form;
}

/** A day and, as buttons, that day's windows with room for `params()` ({addressId, kind}), in the
 * city's own time: {element, chosen(), load()}. The days are the city's: the first answer (asked
 * without a date) names its today, which a phone in another zone would get wrong. `firstDay` (the
 * city's "2026-12-02") opens another day than today. */
function slotPicker(prefix, params, firstDay = null) {
  const day = h("select", {});
  let today = null;
  function listDays() {
    const dayName = new Intl.DateTimeFormat(document.documentElement.lang, { timeZone: "UTC", month: "short", day: "numeric", weekday: "short" });
    fill(day, Array.from({ length: BOOKING_DAYS }, (_, i) => {
      const date = new Date(`${today}T12:00:00Z`);  // noon UTC: the same calendar day in the label
      date.setUTCDate(date.getUTCDate() + i);
      const value = date.toISOString().slice(0, 10);
      return new Option(i < 2 ? `${t(i ? "booking.tomorrow" : "booking.today")} · ${dayName.format(date)}` : dayName.format(date), value);
    }));
    if (firstDay && [...day.options].some((option) => option.value === firstDay)) day.value = firstDay;
  }
  const list = h("div", { class: "slot-list", id: `${prefix}-slots`, role: "group", "aria-labelledby": `${prefix}-slots-h` });
  const status = h("p", { class: "muted", id: `${prefix}-slots-status`, "aria-live": "polite" });
  let chosen = null;
  let seq = 0;  // a reply for an earlier day, address or kind must not draw over the current one

  async function load() {
    const mine = ++seq;
    const { addressId, kind } = params();
    chosen = null;
    fill(list);
    status.className = "muted";
    status.textContent = t("booking.loading");
    try {
      const query = `/v1/slots?address_id=${encodeURIComponent(addressId)}&kind=${encodeURIComponent(kind)}`;
      const found = await api.get(today ? `${query}&date=${day.value}` : query);
      if (mine !== seq) return;
      if (!today) {
        today = found.date;
        listDays();
        if (day.value !== today) return load();
      }
      status.textContent = found.data.length ? "" : t("booking.noWindows");
      fill(list, found.data.map((slot) => {
        const button = h("button", { type: "button", "aria-pressed": "false" },
          windowText(slot.window_start, slot.window_end, found.timezone),
          h("span", { class: "slot-room" }, t("booking.room", { n: slot.capacity })));
        button.addEventListener("click", () => {
          chosen = slot;
          for (const other of list.children) other.setAttribute("aria-pressed", String(other === button));
        });
        return button;
      }));
    } catch (error) {
      if (mine !== seq) return;
      status.className = "error";
      status.textContent = errorText(error);
    }
  }
  day.addEventListener("change", load);
  return { element: [field(`${prefix}-day`, "booking.day", day), h("p", { class: "slot-label", id: `${prefix}-slots-h` }, t("booking.windows")), list, status],
    chosen: () => chosen, load };
}

// -- one order, live ------------------------------------------------------------------------

async function openOrder(orderId) {
  const sections = {
    status: h("section", { class: "card", id: "order-status", "aria-live": "polite" }),
    identity: h("section", { class: "card", id: "identity" }),
    profile: h("section", { class: "card hidden", id: "tech-profile", "aria-labelledby": "tech-profile-h" }),
    price: h("section", { class: "card hidden", id: "price-change" }),
    consent: h("section", { class: "card hidden", id: "followup-consent" }),
    payment: h("section", { class: "card hidden", id: "payment-attention", "aria-live": "polite" }),
    report: h("section", { class: "card hidden", id: "report" }),
    review: h("section", { class: "card hidden", id: "review" }),
    manage: h("section", { class: "card hidden", id: "order-manage", "aria-labelledby": "manage-h" }),
    charges: h("section", { class: "card hidden", id: "order-money", "aria-labelledby": "money-h" }),
    messages: h("section", { class: "card hidden", id: "order-messages", "aria-labelledby": "messages-h" }),
  };
  const mapEl = h("div", { class: "map", id: "order-map", role: "img", "aria-label": t("customer.orderMapLabel") });
  const distance = h("p", { id: "tech-distance", class: "muted", "aria-live": "polite" });
  const arrival = h("p", { id: "order-eta", "aria-live": "polite" });
  const slaClock = h("p", { id: "sla-clock", class: "hidden", role: "timer" });
  const connection = h("p", { id: "live-connection", class: "notice hidden", role: "status" });
  fill(main, h("p", {}, h("a", { href: "#" }, `← ${t("customer.back")}`)),
    h("div", { class: "grid-2" }, sections.status,
      h("section", { class: "card", "aria-labelledby": "live-h" }, h("h2", { id: "live-h" }, t("customer.live")), mapEl, slaClock, arrival, distance, connection)),
    sections.messages,
    h("div", { class: "grid-2" }, sections.payment, sections.identity, sections.profile, sections.price, sections.consent),
    h("div", { class: "grid-2" }, sections.report, sections.review), sections.charges, sections.manage);

  let order = await api.get(`/v1/orders/${orderId}`);
  if (order.kind === "emergency_leak") main.prepend(await safetyAdviceCard(order.id, null, await addressCity(order.address_id)));
  const map = createMap(mapEl);
  stationLayer(state.stations).addTo(map);
  const home = dot(order.location, { label: t("customer.yourAddress") }).addTo(map);
  fit(map, [home], 15);
  let techDot = null;
  let route = null;

  function showTechnician(position) {
    techDot?.remove();
    route?.remove();
    techDot = dot(position, { color: COLORS.technician, label: t("customer.technician") }).addTo(map);
    route = line([position, order.location]).addTo(map);
    fit(map, [home, techDot], 17);
    distance.textContent = t("customer.techDistance", { m: Math.round(distanceM(position, order.location)) });
  }

  // From acceptance until he checks in; the server recomputes it from his live position.
  function showEta(eta) {
    const clock = (iso) => new Intl.DateTimeFormat(document.documentElement.lang, { timeStyle: "short" }).format(new Date(iso));
    arrival.textContent = eta ? t("eta.range", { from: clock(eta.earliest), to: clock(eta.latest) }) : "";
  }

  const refresh = oneAtATime(load);  // pushes in quick succession must not draw an older state last
  // After the first load (whose failure the shell shows), a redraw that fails says why in a toast.
  const redraw = () => refresh().catch((error) => toast(errorText(error)));

  async function load() {
    order = await api.get(`/v1/orders/${orderId}`);
    showEta(order.eta);
    const [events, visit] = await Promise.all([api.get(`/v1/orders/${orderId}/events`),
      order.technician_id || order.source === "followup" ? api.get(`/v1/orders/${orderId}/visit`) : null]);
    renderStatus(sections.status, order, events.data);
    showSla(slaClock, order);
    await renderMessages(sections.messages, orderId);
    sections.identity.classList.remove("hidden");
    if (order.technician_id && ON_JOB.includes(order.status)) {
      await renderIdentity(sections.identity, order);
    } else if (visit?.verification) {
      fill(sections.identity, h("h2", {}, t("customer.atTheDoor")),
        h("p", {}, h("span", { class: "pill ok", id: "verification" }, `${t("customer.verified")} (${t(`verify.${visit.verification}`)})`)));
    } else if (!["created", "matching", "scheduled"].includes(order.status)) {
      sections.identity.classList.add("hidden");  // over without a door check: nobody is being found now
    } else {
      fill(sections.identity, h("h2", {}, t("customer.technician")),
        h("p", { class: "muted" }, t(order.status === "scheduled" ? "booking.waiting" : "customer.waitingMatch")));
    }
    renderPriceChange(sections.price, order, visit, redraw);
    renderFollowup(sections.consent, order, visit, redraw);
    renderPaymentAttention(sections.payment, order, redraw);
    renderReport(sections.report, visit);
    await renderTechnicianProfile(sections.profile, api, order);
    await renderCharges(sections.charges, order);
    await renderManage(sections.manage, order, redraw);
    await renderReview(sections.review, order, redraw);
    if (!ON_JOB.includes(order.status)) { techDot?.remove(); route?.remove(); }
  }

  await refresh();
  const socket = new LiveSocket(() => api.socketUrl(`/v1/ws/orders/${orderId}`), {
    onMessage: (message) => {
      if (message.type === "status" || message.type === "price_change") redraw();
      if (message.type === "position") showTechnician(message.position);
      if (message.type === "eta") showEta(message.eta);
      if (message.type === "notification" && message.notification.kind === "message") {
        renderMessages(sections.messages, orderId).catch((error) => toast(errorText(error)));
      }
      if (message.type === "notification" && Object.hasOwn(BOOKING_NOTICES, message.notification.kind)) {
        tellBookingNotices().then(refresh).catch((error) => toast(errorText(error)));
      }
    },
    // Live updates stop while the socket is down: say so until it is back (4403: it will not be).
    onState: (s, code) => {
      connection.classList.toggle("hidden", s !== "closed");
      connection.textContent = s === "closed" ? t(code === 4403 ? "browser.socketRefused" : "browser.socketLost") : "";
    },
  });
  // The countdown moves between pushes; `order` is the latest one refresh() read.
  const slaTimer = setInterval(() => showSla(slaClock, order), 5000);
  return { close: () => { socket.close(); clearInterval(slaTimer); } };
}

// Before the technician is at the door the page counts down to the time promised at ordering.
const BEFORE_ARRIVAL = ["created", "matching", "offered", "accepted", "en_route"];

function showSla(el, order) {
  const waiting = BEFORE_ARRIVAL.includes(order.status);
  el.classList.toggle("hidden", !waiting);
  if (!waiting) {
    el.textContent = "";
    return;
  }
  const left = Math.ceil((new Date(order.sla_deadline) - Date.now()) / 60000);
  const key = left <= 0 ? "slaClock.overdue" : order.priority === "emergency" ? "slaClock.emergency" : "slaClock.visit";
  el.textContent = t(key, { left: minutesText(left), time: when(order.sla_deadline) });
}

function minutesText(minutes) {
  if (minutes < 120) return t("slaClock.minutes", { n: minutes });
  if (minutes < 48 * 60) return t("slaClock.hours", { h: Math.floor(minutes / 60), m: minutes % 60 });
  return t("slaClock.days", { d: Math.floor(minutes / 1440), h: Math.floor((minutes % 1440) / 60) });
}

// The matching engine's steps, in plain words: how many are asked and how far, never whom.
const MATCHING_STEPS = ["offer_round", "escalated", "offer_lapsed", "alerted"];

function matchingStepText(event, order) {
  const { offers, radius_m: radius } = event.payload;
  if (event.action === "offer_round") {
    const crew = order.priority === "emergency" ? "Emergency" : "";
    return t(offers > 1 ? `orderStep.asking${crew}` : `orderStep.askingOne${crew}`, { n: offers });
  }
  if (event.action === "escalated") {
    const km = new Intl.NumberFormat(document.documentElement.lang, { maximumFractionDigits: 1 }).format(radius / 1000);
    return t("orderStep.widened", { km });
  }
  return t(`orderStep.${event.action}`);
}

function matchingSteps(order, events) {
  const steps = events.filter((e) => MATCHING_STEPS.includes(e.action));
  return steps.length ? h("ul", { class: "plain", id: "order-steps", "aria-label": t("orderStep.title") },
    steps.map((e) => h("li", { "data-action": e.action }, matchingStepText(e, order), h("span", { class: "muted" }, ` ${when(e.created_at)}`)))) : null;
}

// Operations' messages to the customer about this order: a person's words, shown as written.
async function renderMessages(section, orderId) {
  const messages = (await api.get(`/v1/orders/${orderId}/messages`)).data;
  section.classList.toggle("hidden", !messages.length);
  fill(section, h("h2", { id: "messages-h" }, t("orderMessages.title")),
    h("ul", { class: "plain", id: "order-message-list" }, messages.map((m) => h("li", {},
      h("p", { class: "order-message" }, m.text), h("span", { class: "muted" }, when(m.created_at))))));
}

// The city of one of the customer's addresses, for its hotline (undefined: the install's city).
async function addressCity(addressId) {
  const known = state.addresses.find((a) => a.id === addressId);
  return known ? known.city : (await api.get(`/v1/customers/me/addresses/${addressId}`).catch(() => null))?.city;
}

function renderStatus(section, order, events) {
  const reached = new Map(events.map((e) => [e.to_status, e.created_at]));
  // A follow-up starts by waiting for the customer's consent, a booking scheduled, instead of "created".
  const first = ["awaiting_consent", "scheduled"].find((s) => reached.has(s));
  const path = first ? [first, ...STEPS.slice(1)] : STEPS;
  const steps = ["cancelled", "unfulfilled", "payment_attention"].includes(order.status) ? [...reached.keys()] : path;
  fill(section, 
    h("h2", {}, `${kindText(order.kind)} `, h("span", { class: `pill ${order.priority}`, id: "order-status-pill" }, statusText(order.status))),
    order.window_start ? h("p", { class: "order-window", id: "order-window" }, bookedWindow(order)) : null,
    order.final_price
      ? h("p", {}, `${t("customer.finalPrice")}: `, h("strong", { id: "order-final-price" }, money(order.final_price)),
        h("span", { class: "muted" }, ` · ${t("customer.estimate")} ${money(order.price_estimate)}`))
      : h("p", {}, `${t("customer.estimate")}: `, h("strong", { id: "order-estimate" }, money(order.price_estimate))),
    order.description && order.source !== "followup" ? h("p", { class: "muted" }, order.description) : null,
    h("ol", { class: "timeline", id: "timeline" }, steps.map((s) => h("li", {
      class: s === order.status ? "current" : "", "aria-current": s === order.status ? "step" : null },
      `${reached.has(s) ? "✓" : "○"} ${statusText(s)}`, reached.has(s) ? h("span", { class: "muted" }, ` ${when(reached.get(s))}`) : ""))),
    matchingSteps(order, events),
    order.status_reason ? h("p", { class: "notice", id: "status-reason" }, reasonText(order.status_reason)) : null);
}

async function renderIdentity(section, order) {
  let card;
  try {
    card = await api.get(`/v1/orders/${order.id}/technician`);
  } catch (error) {
    // The job ended between the order's read and this one: the status push redraws the page.
    if (problemSlug(error) !== "no-visit-in-progress") throw error;
    section.classList.add("hidden");
    return;
  }
  const verified = card.verification;
  fill(section, 
    h("h2", {}, t("customer.atTheDoor")),
    h("p", {}, h("strong", { id: "tech-name" }, card.name), card.station ? ` · ${card.station}` : ""),
    h("p", { id: "tech-certificate" }, card.certification_kind
      ? `${t("customer.certificate")}: ${t(`cert.${card.certification_kind}`)} · ${card.certification_number}`
      : h("span", { class: "pill bad" }, t("customer.noCertificate"))),
    verified
      ? h("p", {}, h("span", { class: "pill ok", id: "verification" }, `${t("customer.verified")} (${t(`verify.${verified}`)})`))
      : card.code
        ? [h("p", {}, t("customer.codeHint")), h("p", { class: "big-code", id: "door-code" }, card.code),
           h("p", { class: "muted" }, `${t("customer.codeValidUntil")} ${when(card.code_expires_at)}`)]
        : h("p", { class: "notice" }, t("customer.codeLocked")));
}

function renderPriceChange(section, order, visit, refresh) {
  const change = visit?.pending_price_change;
  section.classList.toggle("hidden", !change);
  if (!change) return;
  const approve = h("button", { class: "primary", id: "approve-price", type: "button" }, t("customer.approvePrice"));
  const reject = h("button", { class: "danger", id: "reject-price", type: "button" }, t("customer.rejectPrice"));
  // The decision names the change shown here: if the technician asked another price meanwhile it
  // fails with 409, a toast says so (it outlives the redraw) and the refresh shows the new price.
  const decide = (button, verb) => act(button, null, () => api.post(`/v1/orders/${order.id}/price-change/${verb}`,
    { price_change_id: change.id }).catch((e) => { throw e.status === 409 ? new UserError(t("customer.priceChanged")) : e; }))
    .then(refresh);
  approve.addEventListener("click", () => decide(approve, "approve"));
  reject.addEventListener("click", () => decide(reject, "reject"));
  fill(section, h("h2", {}, t("customer.priceChange")),
    h("p", {}, t("customer.priceChangeText", { amount: money(change.amount), authorised: money(change.authorised) })),
    h("div", { class: "actions" }, approve, reject));
}

// A follow-up says which hazard it rectifies, translated from the hazard's fields; a priced one
// waits for the customer's consent.
function renderFollowup(section, order, visit, refresh) {
  const hazard = visit?.followup_for;
  const waiting = order.status === "awaiting_consent";
  section.classList.toggle("hidden", !hazard && !waiting);
  if (!hazard && !waiting) return;
  const about = hazard ? h("p", { id: "followup-hazard" }, t("customer.followupFor", {
    hazard: t(`hazard.${hazard.category}`), severity: t(`severity.${hazard.severity}`), deadline: when(hazard.deadline_at) })) : null;
  if (!waiting) {
    fill(section, h("h2", {}, t("customer.consentTitle")), about);
    return;
  }
  const error = h("p", { class: "error", role: "alert" });
  const agree = h("button", { class: "primary", id: "consent-followup", type: "button" }, t("customer.consentAgree"));
  const decline = h("button", { class: "danger", id: "decline-followup", type: "button" }, t("customer.consentDecline"));
  agree.addEventListener("click", () => act(agree, error, () => api.post(`/v1/orders/${order.id}/consent`)).then(refresh));
  decline.addEventListener("click", () => act(decline, error,
    () => api.post(`/v1/orders/${order.id}/cancel`, { reason: t("customer.consentDeclined") })).then(refresh));
  fill(section, h("h2", {}, t("customer.consentTitle")), about,
    h("p", {}, t("customer.consentText", { amount: money(order.price_estimate) })),
    error, h("div", { class: "actions" }, agree, decline));
}

// Payment methods as the provider's client library would return them (test mode cards).
const CARDS = [["pm_card_visa", "Visa ···· 4242"], ["pm_card_mastercard", "Mastercard ···· 4444"],
  ["pm_card_chargeDeclined", "Visa ···· 0002"]];

// A declined card: the order waits (before the door the technician was released) until the
// customer pays with another card; a done job is then captured, otherwise matched again.
function renderPaymentAttention(section, order, refresh) {
  const waiting = order.status === "payment_attention";
  section.classList.toggle("hidden", !waiting);
  if (!waiting) return;
  const card = h("select", {}, CARDS.map(([id, label]) => new Option(`${label} (${t("customer.testCard")})`, id)));
  const error = h("p", { class: "error", role: "alert" });
  const pay = h("button", { class: "primary", id: "retry-payment", type: "button" }, t("customer.payWithCard"));
  pay.addEventListener("click", async () => {
    const result = await act(pay, error, () => api.post(`/v1/orders/${order.id}/payment/retry`, { payment_method: card.value }));
    if (!result) return;
    if (result.outcome === "declined") {
      error.textContent = t("customer.paymentDeclined", { left: result.attempts_left });
      return;
    }
    toast(t("customer.paymentAuthorised"));
    await refresh();
  });
  fill(section, h("h2", {}, t("customer.paymentTitle")),
    h("p", { class: "notice" }, t(order.technician_id ? "customer.paymentTextDone" : "customer.paymentText")),
    field("payment-card", "customer.card", card), error, h("div", { class: "actions" }, pay));
}

function renderReport(section, visit) {
  const report = visit?.report;
  const hazards = visit?.hazards ?? [];
  section.classList.toggle("hidden", !report && !hazards.length);
  if (!report && !hazards.length) return;
  fill(section, h("h2", {}, t("customer.workReport")),
    report ? [h("p", {}, report.work_done), jobPhotoThumbs(api, visit.order_id, report.photo_refs, "report-photos"),
      report.parts?.length ? h("ul", {}, report.parts.map((p) => h("li", {}, `${p.name} × ${p.quantity} · ${money({ amount_minor: p.unit_price_minor, currency: report.currency })}`))) : null,
      h("p", {}, `${t("customer.finalPrice")}: `, h("strong", {}, money({ amount_minor: report.final_price_minor, currency: report.currency })))] : null,
    h("h3", {}, t("customer.hazards")),
    hazards.length ? h("ul", { class: "plain", id: "hazards" }, hazards.map((z) => h("li", {},
      h("strong", {}, t(`hazard.${z.category}`)), " ", h("span", { class: `pill ${z.severity === "critical" ? "bad" : "warn"}` }, t(`severity.${z.severity}`)),
      " ", h("span", { class: `pill ${z.resolution === "fixed_on_site" ? "ok" : ""}` },
        t(z.resolution === "fixed_on_site" ? "hazardResolution.fixed_on_site" : `hazardStatus.${z.status}`)),
      z.description ? h("div", {}, z.description) : null,
      jobPhotoThumbs(api, visit.order_id, [...z.photo_refs, ...(z.fix?.photo_refs ?? [])], "hazard-photos"),
      z.fix ? h("div", {}, `${t("customer.fixDone")}: ${z.fix.work_done}`,
        z.fix.parts.length ? ` (${z.fix.parts.map((p) => `${p.name} × ${p.quantity}`).join("、")})` : "") :
        h("div", { class: "muted" }, `${t("customer.fixBy")} ${when(z.deadline_at)}`,
          z.followup_order_id ? [" · ", h("a", { href: `#order/${z.followup_order_id}` }, t("customer.followup"))] : "")))) :
      h("p", { class: "muted" }, t("customer.noHazards")));
}

// -- the money: the hold, what was charged, the receipt ------------------------------------------

// The order's money as the ledger has it (GET /receipt): shown once a hold was placed.
async function renderCharges(section, order) {
  const receipt = await api.get(`/v1/orders/${order.id}/receipt`).catch(() => null);
  const shown = Boolean(receipt?.holds.length);
  section.classList.toggle("hidden", !shown);
  if (!shown) return;
  const [first, last] = [receipt.holds[0], receipt.holds.at(-1)];
  fill(section, h("h2", { id: "money-h" }, t("money.title")),
    h("dl", { class: "facts", id: "money-facts" },
      h("dt", {}, t("money.hold")), h("dd", { id: "money-hold" }, money(last.amount),
        receipt.holds.length > 1 ? h("span", { class: "muted" }, ` · ${t("money.holdRaised", { amount: money(first.amount) })}`) : null),
      receipt.final_price ? [h("dt", {}, t("customer.finalPrice")), h("dd", { id: "money-final" }, money(receipt.final_price))] : null,
      receipt.issued_at ? [
        h("dt", {}, t("money.captured")), h("dd", { id: "money-captured" }, money(receipt.captured)),
        h("dt", {}, t("money.released")), h("dd", { id: "money-released" }, money(receipt.released))] : null,
      receipt.refunds.length ? [h("dt", {}, t("money.refunded")), h("dd", { id: "money-refunded" }, money(receipt.refunded))] : null),
    receipt.issued_at
      ? h("div", { class: "actions" }, h("a", { class: "button primary", id: "open-receipt", href: `#order/${order.id}/receipt` }, t("money.openReceipt")))
      : h("p", { class: "muted" }, t(receipt.held.amount_minor ? "money.notCharged" : "money.releasedAll")));
}

const LINE_NAMES = { labour: "money.line.labour", discount: "money.line.discount", cancellation_fee: "money.line.cancellation_fee" };

// The printable receipt: the utility's invoice details, the price in lines, the payment's figures.
async function renderReceipt(orderId, seq) {
  const receipt = await api.get(`/v1/orders/${orderId}/receipt`);
  if (seq !== routeSeq) return;
  const back = h("p", { class: "no-print" }, h("a", { href: `#order/${orderId}` }, `← ${t("money.backToOrder")}`));
  if (!receipt.issued_at) {
    fill(main, back, h("section", { class: "card", id: "receipt" }, h("h2", {}, t("money.receipt")),
      h("p", { class: "notice" }, t("money.notIssued"))));
    return;
  }
  const cell = (text, cls) => h("td", { class: cls }, text);
  const print = h("button", { type: "button", class: "primary", id: "print-receipt" }, t("money.print"));
  print.addEventListener("click", () => window.print());
  const issuer = receipt.issuer;
  fill(main, back, h("article", { class: "card receipt", id: "receipt", "aria-labelledby": "receipt-h" },
    h("h2", { id: "receipt-h" }, t("money.receipt")),
    h("dl", { class: "facts", id: "receipt-issuer" },
      h("dt", {}, t("money.issuer")), h("dd", {}, issuer.name),
      h("dt", {}, t("money.taxId")), h("dd", { id: "receipt-tax-id" }, issuer.tax_id),
      h("dt", {}, t("money.issuerAddress")), h("dd", {}, issuer.address),
      h("dt", {}, t("money.number")), h("dd", {}, receipt.order_id),
      h("dt", {}, t("money.issuedAt")), h("dd", {}, when(receipt.issued_at)),
      receipt.billed_to ? [h("dt", {}, t("money.billedTo")), h("dd", {}, `${receipt.billed_to.name} · ${receipt.billed_to.address}`)] : null,
      h("dt", {}, t("money.service")), h("dd", {}, kindText(receipt.kind))),
    h("div", { class: "table-wrap" }, h("table", { id: "receipt-lines" },
      h("thead", {}, h("tr", {}, h("th", {}, t("money.item")), h("th", { class: "num" }, t("money.quantity")),
        h("th", { class: "num" }, t("money.unitPrice")), h("th", { class: "num" }, t("money.amount")))),
      h("tbody", {}, receipt.lines.map((line) => h("tr", { "data-kind": line.kind },
        cell(line.kind === "part" ? `${t("money.line.part")}: ${line.name}` : t(LINE_NAMES[line.kind])),
        cell(String(line.quantity), "num"), cell(money(line.unit_price), "num"), cell(money(line.amount), "num")))),
      h("tfoot", {}, h("tr", {}, h("td", { colspan: 3 }, t("money.total")),
        h("td", { class: "num", id: "receipt-total" }, money(receipt.final_price)))))),
    receipt.followups.length ? [h("h3", {}, t("money.followups")), h("ul", { class: "plain", id: "receipt-followups" },
      receipt.followups.map((f) => h("li", {}, `${t(`hazard.${f.hazard_category}`)} (${t(`severity.${f.hazard_severity}`)}) · `,
        `${t("customer.estimate")} ${money(f.price_estimate)} · ${statusText(f.status)}`)))] : null,
    h("h3", {}, t("money.payment")),
    h("dl", { class: "facts", id: "receipt-payment" },
      receipt.holds.map((hold) => [h("dt", {}, t("money.hold")), h("dd", {}, `${money(hold.amount)} · ${when(hold.at)}`)]),
      h("dt", {}, t("money.captured")), h("dd", { id: "receipt-captured" }, money(receipt.captured)),
      h("dt", {}, t("money.released")), h("dd", { id: "receipt-released" }, money(receipt.released)),
      receipt.refunds.map((r) => [h("dt", {}, t(`money.${r.kind}`)), h("dd", {}, `−${money(r.amount)} · ${when(r.at)}`)]),
      h("dt", {}, t("money.paid")), h("dd", { id: "receipt-paid" }, h("strong", {}, money(receipt.paid)))),
    h("div", { class: "actions no-print" }, print)));
}

async function renderReview(section, order, refresh) {
  const reviewable = ["completed", "reviewed", "settled"].includes(order.status);
  section.classList.toggle("hidden", !reviewable);
  if (!reviewable) return;
  const existing = await api.get(`/v1/orders/${order.id}/review`).catch(() => null);
  if (existing) {
    fill(section, h("h2", {}, t("customer.review")),
      h("p", { id: "review-done" }, `${"★".repeat(existing.stars)}${"☆".repeat(5 - existing.stars)} · ${t("customer.thanks")}`),
      existing.tags.length ? h("p", { class: "muted" }, existing.tags.map((tag) => t(`tag.${tag}`)).join("、")) : null);
    return;
  }
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary", id: "submit-review" }, t("customer.submitReview"));
  const comment = h("textarea", { maxlength: 1000 });
  const form = h("form", {},
    h("h2", {}, t("customer.review")),
    h("fieldset", { class: "stars" }, h("legend", {}, t("customer.stars")),
      [1, 2, 3, 4, 5].map((n) => h("label", { class: "inline" },
        h("input", { type: "radio", name: "stars", value: String(n), required: true, checked: n === 5 }), `${n} ★`))),
    h("fieldset", {}, h("legend", {}, t("customer.tags")),
      REVIEW_TAGS.map((tag) => h("label", { class: "inline" }, h("input", { type: "checkbox", name: "tags", value: tag }), t(`tag.${tag}`)))),
    field("review-comment", "customer.comment", comment), error, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { stars: Number(data.get("stars")), tags: data.getAll("tags") };
    if (comment.value.trim()) body.comment = comment.value.trim();
    if (await act(submit, error, () => api.post(`/v1/orders/${order.id}/review`, body))) refresh();
  });
  fill(section, form);
}

// -- cancel and reschedule ------------------------------------------------------------------------

const CANCEL_REASONS = ["changed_mind", "too_slow", "fixed_myself", "not_home", "wrong_service", "other"];
const CANCELLABLE = ["awaiting_consent", "scheduled", "created", "matching", "offered", "accepted", "en_route", "payment_attention"];

// The buttons follow the quote: what cancelling costs now, and whether rescheduling is possible.
// The order's socket redraws the page after either, so nothing is refreshed here. A booking not
// yet released moves to another window instead (its own route, redrawn by `refresh`).
async function renderManage(section, order, refresh) {
  const quote = CANCELLABLE.includes(order.status)
    ? await api.get(`/v1/orders/${order.id}/cancellation-quote`).catch(() => null) : null;
  const booked = order.status === "scheduled";
  const shown = Boolean(quote && (quote.can_cancel || quote.can_reschedule || booked));
  section.classList.toggle("hidden", !shown);
  if (!shown) return;
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-order" }, t("cancel.button"));
  const reschedule = h("button", { type: "button", id: "reschedule-order" }, t("cancel.reschedule"));
  const move = h("button", { type: "button", id: "move-booking" }, t("booking.move"));
  cancel.addEventListener("click", () => openCancelDialog(order, "cancel").catch((e) => toast(errorText(e))));
  reschedule.addEventListener("click", () => openCancelDialog(order, "reschedule").catch((e) => toast(errorText(e))));
  move.addEventListener("click", () => openMoveDialog(order, refresh));
  fill(section, h("h2", { id: "manage-h" }, t("cancel.title")),
    h("p", { class: "muted", id: "cancel-fee-now" }, feeText(quote)),
    h("div", { class: "actions" }, booked ? move : null, quote.can_reschedule ? reschedule : null, " ", quote.can_cancel ? cancel : null));
}

// The same windows as booking, for this order's address and work, from its current day.
function openMoveDialog(order, refresh) {
  document.getElementById("move-dialog")?.close();
  const dialog = h("dialog", { class: "card", id: "move-dialog", "aria-labelledby": "move-dialog-h" });
  dialog.addEventListener("close", () => dialog.remove());
  const picker = slotPicker("move", () => ({ addressId: order.address_id, kind: order.kind }), dayIn(order.window_start, order.timezone));
  const error = h("p", { class: "error", role: "alert" });
  const confirm = h("button", { type: "button", class: "primary", id: "move-confirm" }, t("booking.moveConfirm"));
  const keep = h("button", { type: "button", id: "move-keep" }, t("booking.keep"));
  keep.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", async () => {
    const slot = picker.chosen();
    if (!slot) { error.textContent = t("booking.pickWindow"); return; }
    const moved = await act(confirm, error, () => api.post(`/v1/bookings/${order.id}/reschedule`, { window_start: slot.window_start }));
    if (!moved) { picker.load(); return; }
    dialog.close();
    toast(t("booking.moved"));
    await refresh();
  });
  fill(dialog, h("h2", { id: "move-dialog-h" }, t("booking.moveTitle")),
    h("p", { class: "muted" }, bookedWindow(order)),
    picker.element, error, h("div", { class: "actions" }, keep, " ", confirm));
  document.body.append(dialog);
  dialog.showModal();
  picker.load();
}

function feeText(quote) {
  if (quote.fee.amount_minor > 0) return `${t("cancel.fee", { amount: money(quote.fee) })} ${t("cancel.feeExplain")}`;
  return quote.free_until ? t("cancel.freeUntil", { time: new Date(quote.free_until).toLocaleTimeString() }) : t("cancel.free");
}

// The confirmation names the fee the customer agrees to; the server refuses (409) to charge more,
// and the dialog then shows the new fee to confirm again.
async function openCancelDialog(order, mode) {
  document.getElementById("cancel-dialog")?.close();
  let quote = await api.get(`/v1/orders/${order.id}/cancellation-quote`);
  const dialog = h("dialog", { class: "card", id: "cancel-dialog", "aria-labelledby": "cancel-dialog-h" });
  dialog.addEventListener("close", () => dialog.remove());
  const reason = h("select", { required: true }, CANCEL_REASONS.map((code) => new Option(t(`cancelReason.${code}`), code)));
  const note = h("input", { maxlength: 300 });
  const fee = h("p", { id: "cancel-dialog-fee", "aria-live": "assertive" });
  const error = h("p", { class: "error", role: "alert" });
  const confirm = h("button", { type: "button", class: mode === "cancel" ? "danger" : "primary", id: "cancel-confirm" });
  const keep = h("button", { type: "button", id: "cancel-keep" }, t("cancel.keep"));
  const show = () => {
    fee.textContent = mode === "cancel" ? feeText(quote) : t("cancel.rescheduleText");
    confirm.textContent = mode === "reschedule" ? t("cancel.confirmReschedule")
      : quote.fee.amount_minor > 0 ? t("cancel.confirmFee", { amount: money(quote.fee) }) : t("cancel.confirm");
  };
  show();
  keep.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", async () => {
    const words = [t(`cancelReason.${reason.value}`), note.value.trim()].filter(Boolean).join(" · ");
    const request = mode === "cancel"
      ? () => api.post(`/v1/orders/${order.id}/cancel`, { reason: words, reason_code: reason.value,
        accepted_fee_minor: quote.fee.amount_minor })
      : () => api.post(`/v1/orders/${order.id}/reschedule`, { reason_code: reason.value, reason: words });
    const done = await act(confirm, error, () => request().catch(async (e) => {
      if (e.status !== 409) throw e;
      quote = await api.get(`/v1/orders/${order.id}/cancellation-quote`);
      show();
      throw new UserError(t(e.problem?.type === "/problems/cancellation-fee-changed" ? "cancel.feeChanged" : "cancel.notNow",
        { state: statusText(e.problem?.current_state ?? quote.status) }));
    }));
    if (!done) return;
    dialog.close();
    toast(t(mode === "cancel" ? "cancel.done" : "cancel.rescheduled"));
  });
  fill(dialog, h("h2", { id: "cancel-dialog-h" }, t(mode === "cancel" ? "cancel.confirmTitle" : "cancel.rescheduleTitle")),
    fee, field("cancel-reason", "cancel.reason", reason), field("cancel-note", "cancel.note", note), error,
    h("div", { class: "actions" }, keep, " ", confirm));
  document.body.append(dialog);
  dialog.showModal();
}

// -- gas alarm safety notice ----------------------------------------------------------------

// A methane alarm (or the customer's own gas-leak order) shows what to do now, first on the
// page: the same advice as the safety notification, translated here.
async function showSafetyNotices() {
  const unread = await api.get("/v1/notifications?unread=true&limit=20").catch(() => ({ data: [] }));
  const notices = unread.data.filter((n) => n.kind === "alarm_safety_advice");
  for (const notice of notices.reverse()) {
    const order = await api.get(`/v1/orders/${notice.payload.order_id}`).catch(() => null);
    main.prepend(await safetyAdviceCard(notice.payload.order_id, notice, order && await addressCity(order.address_id)));
  }
}

async function safetyAdviceCard(orderId, notice = null, city = null) {
  const card = await safetyCard({ id: `safety-${orderId}`, title: t(notice ? "safety.alarmTitle" : "safety.leakTitle"),
    steps: notice?.payload.steps, city });
  card.append(h("p", { class: "muted" }, t("safety.crewComing")));
  const actions = h("div", { class: "actions" });
  if (location.hash !== `#order/${orderId}`) actions.append(h("a", { href: `#order/${orderId}` }, t("safety.followOrder")));
  if (notice) {
    const seen = h("button", { type: "button" }, t("safety.understood"));
    seen.addEventListener("click", async () => {
      await api.post(`/v1/notifications/${notice.id}/read`, {}).catch((error) => toast(errorText(error)));
      card.remove();
    });
    actions.append(" ", seen);
  }
  card.append(actions);
  return card;
}

// -- "I smell gas" ----------------------------------------------------------------------------

// Signed out (the sign-in form is showing) the dialog gives the steps and the numbers; signed in
// it ends with the one button reporting the leak.
async function openGasLeak() {
  if (!api?.session()) {
    await openSmellGas({ signInHref: "#gas-leak" });
    return;
  }
  const onOrder = location.hash.match(/^#order\/([0-9a-f-]{36})$/);  // from an order page: its address first
  const [addresses, order] = await Promise.all([api.all("/v1/customers/me/addresses").catch(() => []),
    onOrder ? api.get(`/v1/orders/${onOrder[1]}`).catch(() => null) : null]);
  await openSmellGas({ report: { addresses, selected: order?.address_id ?? state.selected, submit: reportGasLeak } });
}

// 201 is a new emergency; 200 is the home's gas-leak order already open (a detector's, or a
// second report), opened here all the same.
async function reportGasLeak(addressId) {
  const order = await api.post("/v1/orders", { kind: "emergency_leak", address_id: addressId });
  toast(t(order.http_status === 200 ? "gasLeak.joined" : "gasLeak.reported"));
  if (location.hash === `#order/${order.id}`) await route();
  else location.hash = `#order/${order.id}`;
  return order;
}
