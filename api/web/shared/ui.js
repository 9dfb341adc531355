// Small DOM helpers and formatting shared by the apps.
import { NetworkError } from "./api.js";
import { currentLang, hasText, t } from "./i18n.js";

/** `load` run one at a time, once more after the calls that came while it ran: two loads side
 * by side could finish out of order and leave the older state on the page. Every caller's promise
 * settles when a load that started after its call has finished. */
export function oneAtATime(load) {
  let running = null, again = false;
  return () => {
    if (running) { again = true; return running; }
    running = (async () => {
      try {
        do { again = false; await load(); } while (again);
      } finally { running = null; }
    })();
    return running;
  };
}

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

/** The phone's calendar day of `date` as the API's `date` parameter: "2026-12-02". */
export function isoDay(date) {
  return [date.getFullYear(), String(date.getMonth() + 1).padStart(2, "0"), String(date.getDate()).padStart(2, "0")].join("-");
}

/** The calendar day of an instant in a zone ("2026-12-02"): an appointment's day in its city. */
export function dayIn(iso, timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date(iso));
}

/** A time of day in a zone's wall clock ("08:40"): an appointment's city, the browser's without one. */
export function clockTime(iso, timeZone) {
  return new Intl.DateTimeFormat(currentLang(), { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(new Date(iso));
}

/** An appointment window: "08:00–10:00", after its day ("12月2日周三") when `withDay`. */
export function windowText(start, end, timeZone, withDay = false) {
  const range = `${clockTime(start, timeZone)}–${clockTime(end, timeZone)}`;
  if (!withDay) return range;
  const day = new Intl.DateTimeFormat(currentLang(), { timeZone, month: "short", day: "numeric", weekday: "short" }).format(new Date(start));
  return `${day} ${range}`;
}

export const statusText = (status) => t(`status.${status}`);

/** Why an order changed state: the system's slug in the reader's language, a person's words as written. */
export const reasonText = (reason) => (hasText(`reason.${reason}`) ? t(`reason.${reason}`) : reason);
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

/** An error whose message is already in the user's language (the apps' own refusals). */
export class UserError extends Error {}

/** How long to wait, in the user's words: "30 秒钟", "5 minutes", "24 小时". */
export function duration(seconds) {
  const [value, unit] = seconds < 90 ? [Math.ceil(seconds), "second"]
    : seconds < 5400 ? [Math.ceil(seconds / 60), "minute"] : [Math.ceil(seconds / 3600), "hour"];
  return new Intl.NumberFormat(currentLang(), { style: "unit", unit, unitDisplay: "long" }).format(value);
}

/** The slug and fields of a failed call: a REST problem+json, or a socket's `error` reply. */
function problemOf(error) {
  const problem = error?.problem;
  if (problem) {
    const slug = typeof problem.type === "string" ? problem.type.split("/problems/")[1] : undefined;
    return { slug, fields: { ...problem, status: problem.status ?? error.status } };
  }
  if (error?.reply?.type === "error") return { slug: error.reply.code, fields: error.reply };
  return null;
}

/** The problem slug of a failed call ("no-visit-in-progress"), or undefined. */
export const problemSlug = (error) => problemOf(error)?.slug;

// Where a 422's `loc` says the value was (the JSON body, the URL's query or path): not a field.
const REQUEST_PARTS = new Set(["body", "query", "path", "header", "cookie"]);

/** The form field a problem names, in the reader's words: a 422's first error (`loc`) or a domain
 * error's `field` ("weekly[0].breaks[1]"). Its last name, as worded under the nearest enclosing
 * name ("parts.name", "query.to") or alone ("name"); list positions are skipped. Undefined when
 * the dictionary does not word it: the page then says it generally, never the raw English name. */
function fieldText(fields) {
  const path = Array.isArray(fields.errors) ? fields.errors[0]?.loc
    : typeof fields.field === "string" ? fields.field.split(/[.[\]]+/) : undefined;
  const names = (Array.isArray(path) ? path : []).map(String).filter((part) => part && !/^\d+$/.test(part));
  const name = names.pop();
  if (!name || REQUEST_PARTS.has(name)) return undefined;
  const key = [...names.reverse().map((outer) => `field.${outer}.${name}`), `field.${name}`].find(hasText);
  return key && t(key);
}

// Fields the server sends as data, put in words here: seconds as a duration, a state, money, the
// field at fault (replacing its raw name, which a text must not show).
function wordsFor(fields) {
  const vars = { ...fields, field: fieldText(fields) };
  if (Number.isFinite(fields.retry_after_s)) vars.wait = duration(fields.retry_after_s);
  if (typeof fields.current_state === "string") vars.state = statusText(fields.current_state);
  if (fields.fee?.amount_minor !== undefined) vars.fee = money(fields.fee);
  return vars;
}

const GEOLOCATION_CODES = { 1: "denied", 2: "unavailable", 3: "timeout" };

/** The phone's position could not be had: permission refused, no fix, or too slow. */
export function geolocationText(error) {
  return t(`browser.geolocation.${GEOLOCATION_CODES[error?.code] ?? "unsupported"}`);
}

/** What a person reads for a failed call: the problem's slug translated with its fields, never the
 * server's English `detail`. `context` names the screen ("login"): `<context>.problem.<slug>`
 * words a slug for it; a `reason` field picks `problem.<slug>.<reason>`; a field at fault with
 * words for it picks `problem.<slug>.field`, which names it. */
export function errorText(error, context) {
  if (error?.problem?.detail === "wrong-role") return t("login.wrongRole");
  if (error instanceof UserError) return error.message;
  if (error instanceof NetworkError) return t("problem.network");
  if (typeof GeolocationPositionError !== "undefined" && error instanceof GeolocationPositionError) {
    return geolocationText(error);
  }
  const found = problemOf(error);
  if (found) {
    const { slug, fields } = found;
    const vars = wordsFor(fields);
    const key = [context && `${context}.problem.${slug}`, fields.reason && `problem.${slug}.${fields.reason}`,
      vars.field && `problem.${slug}.field`, `problem.${slug}`].find((k) => k && hasText(k));
    if (key) return t(key, vars);
    return fields.status ? t("problem.generic", { status: fields.status }) : t("problem.unexpected");
  }
  console.error(error);  // a fault in the page itself: for the developer, not the user
  return t("problem.unexpected");
}

/** Runs an async action from a button: disables it meanwhile, shows the error in `errorEl`. */
export async function act(button, errorEl, action, { context } = {}) {
  if (errorEl) errorEl.textContent = "";
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (error) {
    if (errorEl) errorEl.textContent = errorText(error, context);
    else toast(errorText(error, context));
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** The sign-in form, rendered into `container`; resolves once signed in with an allowed role.
 * `signUp(container, {done, back})`, where accounts may be self-registered, offers a new account. */
export function signIn(container, api, roles, { signUp } = {}) {
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
    if (signUp) {
      const create = h("button", { type: "button", id: "signup-open" }, t("signup.open"));
      create.addEventListener("click", () => signUp(container, { done: resolve, back: () => fill(container, form) }));
      form.append(h("p", { class: "signup-offer" }, t("signup.noAccount"), " ", create));
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = await act(submit, error, () => api.login(email.value.trim(), password.value, roles), { context: "login" });
      if (token) resolve(token);
    });
    fill(container, form);
  });
}
