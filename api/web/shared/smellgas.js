// "I smell gas": the safety steps, the emergency numbers and the one button that reports a
// leak, shared by the landing page and the customer app (the entry button, the dialog, the
// emergency order page and the gas-alarm notice). The server sends step slugs and numbers
// (GET /v1/safety/gas-leak); the words are translated here.
import { t } from "./i18n.js";
import { act, fill, h } from "./ui.js";

// An emergency screen must help even when the request fails: the steps and 119 need no server.
const WITHOUT_SERVER = {
  steps: ["leave_room", "no_flames_or_switches", "no_phone_inside", "open_windows_if_safe", "close_meter_valve"],
  hotlines: [{ number: "119" }],
};

const advice = new Map();  // by city id, "" for the install's own city

/**
 * The steps and hotlines of a city (a city id; the install's city when none), fetched once per
 * page and city (retried after a failure); never rejects. A city the server does not answer for
 * gets the install's city's numbers.
 */
export function gasLeakAdvice(city = null) {
  const key = city ?? "";
  if (!advice.has(key)) {
    const query = city ? `?city=${encodeURIComponent(city)}` : "";
    advice.set(key, fetch(`/v1/safety/gas-leak${query}`, { headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(`HTTP ${response.status}`))))
      .catch(() => {
        advice.delete(key);
        return city ? gasLeakAdvice() : WITHOUT_SERVER;
      }));
  }
  return advice.get(key);
}

/** The steps, numbered in the order to follow them. */
export function stepsList(steps) {
  return h("ol", { class: "gas-steps" }, steps.map((slug) => h("li", { "data-step": slug }, t(`gasLeak.step.${slug}`))));
}

/** One big call button per number: the city's gas emergency line first, then 119. */
export function hotlineLinks(hotlines) {
  return h("div", { class: "gas-hotlines" }, hotlines.map((line) => h("a", {
    class: "button danger gas-call", href: `tel:${line.number}`, "data-number": line.number },
  t(line.city ? "gasLeak.cityHotline" : "gasLeak.fireHotline", { number: line.number }))));
}

/** The steps and the city's numbers under a title, as a card for a page (order page, alarm notice). */
export async function safetyCard({ id, title, steps = null, city = null }) {
  const { steps: defaultSteps, hotlines } = await gasLeakAdvice(city);
  return h("section", { class: "card gas-safety", role: "alert", id, "aria-labelledby": `${id}-h` },
    h("h2", { id: `${id}-h` }, title), stepsList(steps ?? defaultSteps),
    h("h3", {}, t("gasLeak.callFromOutside")), hotlineLinks(hotlines));
}

/** The big red "I smell gas" button; its text follows the language switch (data-i18n). */
export function smellGasButton(onClick) {
  return h("button", { type: "button", class: "danger smellgas-entry", id: "smell-gas", "data-i18n": "gasLeak.smellGas",
    onclick: onClick }, t("gasLeak.smellGas"));
}

/**
 * Opens the "I smell gas" dialog: the steps, then the action. Signed in (`report` given) the
 * action is one button reporting the leak at the chosen address, `report.submit(addressId)`
 * resolving once the order is open, and the numbers are those of that address's city; signed
 * out it is the install's city's numbers, with a link to sign in (`signInHref`).
 */
export async function openSmellGas({ report = null, signInHref = null } = {}) {
  document.getElementById("smellgas-dialog")?.close();
  const chosen = report?.addresses.find((a) => a.id === report.selected) ?? report?.addresses[0];
  const { steps, hotlines } = await gasLeakAdvice(chosen?.city);
  const dialog = h("dialog", { class: "smellgas", id: "smellgas-dialog", "aria-labelledby": "smellgas-title" });
  dialog.addEventListener("close", () => dialog.remove());
  const close = h("button", { type: "button", id: "smellgas-close", onclick: () => dialog.close() }, t("gasLeak.close"));
  const signIn = signInHref
    ? h("a", { href: signInHref, id: "smellgas-sign-in", onclick: () => dialog.close() }, t("gasLeak.signIn"))
    : null;
  let lines = hotlineLinks(hotlines);
  // Another address may be in another city: its numbers replace these.
  const showCity = async (addressId) => {
    const next = hotlineLinks((await gasLeakAdvice(report.addresses.find((a) => a.id === addressId)?.city)).hotlines);
    if (document.getElementById("smellgas-address")?.value !== addressId) return;  // chosen again meanwhile
    lines.replaceWith(next);
    lines = next;
  };
  fill(dialog,
    h("h2", { id: "smellgas-title" }, t("gasLeak.title")),
    stepsList(steps),
    report ? reportControls(report, dialog, showCity) : null,
    h("h3", {}, t("gasLeak.callFromOutside")),
    lines,
    report ? null : h("p", { class: "muted", id: "smellgas-signed-out" }, t("gasLeak.signedOut")),
    h("div", { class: "actions smellgas-footer" }, signIn, close));
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

function reportControls(report, dialog, onAddress) {
  if (!report.addresses.length) return h("p", { class: "notice", id: "smellgas-no-address" }, t("gasLeak.noAddress"));
  const error = h("p", { class: "error", role: "alert" });
  const address = h("select", { id: "smellgas-address" }, report.addresses.map((a) =>
    new Option(`${a.label} · ${a.line}`, a.id, false, a.id === report.selected)));
  address.addEventListener("change", () => onAddress(address.value));
  const button = h("button", { type: "button", class: "danger smellgas-report", id: "smellgas-report" }, t("gasLeak.report"));
  button.addEventListener("click", async () => {
    if (await act(button, error, () => report.submit(address.value))) dialog.close();
    else error.append(" ", t("gasLeak.failed"));
  });
  return [h("label", { for: "smellgas-address" }, t("gasLeak.address")), address, button, error];
}
