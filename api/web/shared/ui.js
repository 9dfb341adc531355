// Small DOM helpers and formatting shared by the apps.
import { currentLang, hasText, t } from "./i18n.js";

/** h("button", {class: "primary", onclick}, "text", child…) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    // Properties for non-strings and for value (a textarea has no value attribute).
    else if (name in el && (typeof value !== "string" || name === "value")) el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null && child !== false) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replaces an element's children; arrays are flattened, empty values skipped (as in h()). */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Node ? c : String(c))));
  return el;
}

/** A labelled form control: returns [label, control]. */
export function field(id, labelKey, control) {
  control.id = id;
  return [h("label", { for: id }, t(labelKey)), control];
}

export function money(m) {
  if (!m) return "";
  const amount = (m.amount_minor ?? m) / 100;
  const currency = m.currency || "CNY";
  return new Intl.NumberFormat(currentLang(), { style: "currency", currency }).format(amount);
}

export const minor = (value) => Math.round(Number(value) * 100);

export function when(iso) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(currentLang(), { dateStyle: "short", timeStyle: "short" }).format(new Date(iso));
}

export const statusText = (status) => t(`status.${status}`);
/** Service kinds are a catalogue admins extend: an unknown code shows as itself. */
export function kindText(kind) {
  const text = t(`kind.${kind}`);
  return text === `kind.${kind}` ? kind : text;
}

export function toast(message) {
  const el = h("div", { class: "toast", role: "status" }, message);
  document.body.append(el);
  setTimeout(() => el.remove(), 3500);
}

/** What a person reads for a failed call: the problem's slug translated, never the server's English. */
export function errorText(error) {
  const problem = error?.problem;
  if (problem?.detail === "wrong-role") return t("login.wrongRole");
  const slug = typeof problem?.type === "string" ? problem.type.split("/problems/")[1] : undefined;
  if (slug && hasText(`problem.${slug}`)) return t(`problem.${slug}`);
  if (problem?.status) return t("problem.generic", { status: problem.status });
  if (error instanceof TypeError) return t("problem.network");  // fetch() failed: no connection
  return error?.message || String(error);
}

/** Runs an async action from a button: disables it meanwhile, shows the error in `errorEl`. */
export async function act(button, errorEl, action) {
  if (errorEl) errorEl.textContent = "";
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (error) {
    if (errorEl) errorEl.textContent = errorText(error);
    else toast(errorText(error));
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** The sign-in form, rendered into `container`; resolves once signed in with an allowed role. */
export function signIn(container, api, roles) {
  return new Promise((resolve) => {
    const error = h("p", { class: "error", role: "alert" });
    const email = h("input", { type: "email", autocomplete: "username", required: true });
    const password = h("input", { type: "password", autocomplete: "current-password", required: true });
    const submit = h("button", { class: "primary", type: "submit", id: "login-submit" }, t("login.submit"));
    const form = h("form", { class: "card", id: "login-form" },
      h("h2", {}, t("login.title")),
      field("login-email", "login.email", email),
      field("login-password", "login.password", password),
      error, h("div", { class: "actions" }, submit));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = await act(submit, error, () => api.login(email.value.trim(), password.value, roles));
      if (token) resolve(token);
    });
    fill(container, form);
  });
}
