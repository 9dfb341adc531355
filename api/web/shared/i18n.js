// Simplified Chinese by default, English on request; the strings live in one dictionary per language.
import zh from "./i18n/zh-CN.js";
import en from "./i18n/en.js";
import zhProblems from "./i18n/problems.zh-CN.js";
import enProblems from "./i18n/problems.en.js";

const DICTIONARIES = { "zh-CN": { ...zh, ...zhProblems }, en: { ...en, ...enProblems } };
const KEY = "gasdispatch.lang";
let lang = DICTIONARIES[localStorage.getItem(KEY)] ? localStorage.getItem(KEY) : "zh-CN";

export const currentLang = () => lang;

export const hasText = (key) => key in DICTIONARIES["zh-CN"];

export function t(key, vars = {}) {
  const text = DICTIONARIES[lang][key] ?? DICTIONARIES["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] ?? `{${name}}`));
}

/** Fills elements marked data-i18n (text), data-i18n-placeholder and data-i18n-aria-label. */
export function translatePage(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  const title = document.querySelector("title[data-i18n]");
  if (title) document.title = t(title.dataset.i18n);
}

/** A labelled language select; `onChange` re-renders the dynamic parts. */
export function languageSwitch(container, onChange) {
  const id = "lang-select";
  container.innerHTML = "";
  const label = Object.assign(document.createElement("label"), { htmlFor: id, className: "sr-only" });
  label.dataset.i18n = "common.language";
  const select = Object.assign(document.createElement("select"), { id });
  select.style.width = "auto";
  for (const [code, name] of [["zh-CN", "简体中文"], ["en", "English"]]) {
    select.append(new Option(name, code, false, code === lang));
  }
  select.addEventListener("change", () => {
    lang = select.value;
    localStorage.setItem(KEY, lang);
    translatePage();
    onChange?.();
  });
  container.append(label, select);
}
