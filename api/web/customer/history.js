// The customer's past orders, newest first, with what each cost and "order again": the same
// work at the same address, placed at once as a new order that is matched afresh.
import { t } from "../shared/i18n.js";
import { act, fill, h, kindText, money, statusText, when } from "../shared/ui.js";

const PAST = ["completed", "reviewed", "settled", "cancelled", "unfulfilled"];
// A gas leak is reported through "I smell gas", which gives the safety steps first.
const NOT_REPEATED = ["emergency_leak"];
const SHOWN = 200;

/** Draws the history into `main` unless `isCurrent()` turned false while loading. */
export async function renderHistory(main, api, isCurrent) {
  const [orders, addresses] = await Promise.all([api.all("/v1/orders?limit=100", SHOWN), api.all("/v1/customers/me/addresses")]);
  if (!isCurrent()) return;
  const places = new Map(addresses.map((a) => [a.id, a]));
  const past = orders.filter((o) => PAST.includes(o.status));
  fill(main, h("p", {}, h("a", { href: "#" }, `← ${t("customer.back")}`)),
    h("section", { class: "card", id: "history", "aria-labelledby": "history-h" },
      h("h2", { id: "history-h" }, t("history.title")),
      past.length ? h("ul", { class: "plain", id: "history-list" }, past.map((o) => pastOrder(api, o, places.get(o.address_id))))
        : h("p", { class: "muted" }, t("history.none"))));
}

function pastOrder(api, order, address) {
  const error = h("p", { class: "error", role: "alert" });
  const again = !NOT_REPEATED.includes(order.kind) && address
    ? h("button", { type: "button", class: "primary reorder", id: `reorder-${order.id}` }, t("history.reorder")) : null;
  again?.addEventListener("click", async () => {
    const placed = await act(again, error, () => api.post("/v1/orders",
      { kind: order.kind, address_id: order.address_id, description: order.description }));
    if (placed) location.hash = `#order/${placed.id}`;
  });
  const price = order.final_price ?? order.price_estimate;
  return h("li", { dataset: { order: order.id, status: order.status } },
    h("a", { href: `#order/${order.id}` }, h("strong", {}, kindText(order.kind))), " ",
    h("span", { class: "pill" }, statusText(order.status)),
    h("div", { class: "muted" }, [when(order.created_at), address ? `${address.label} · ${address.line}` : t("history.addressGone"),
      price ? `${t(order.final_price ? "customer.finalPrice" : "customer.estimate")} ${money(price)}` : null].filter(Boolean).join(" · ")),
    order.description ? h("div", { class: "history-description" }, order.description) : null,
    error, again ? h("div", { class: "actions" }, again) : null);
}
