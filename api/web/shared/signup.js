// Self-registration for customers and technicians (staff accounts are never self-registered):
// the account is created, then signed in at once, so the app opens on its first step (a
// customer's address, a technician's onboarding checklist).
import { t } from "./i18n.js";
import { act, field, fill, h } from "./ui.js";

const MIN_PASSWORD = 10;  // dispatch/accounts.py MIN_PASSWORD_LENGTH

/** The sign-up form for `role` in `container`; `done(token)` once signed in, `back()` to the sign-in form. */
export function showSignUp(container, api, role, { done, back }) {
  const error = h("p", { class: "error", role: "alert" });
  const name = h("input", { required: true, maxlength: 100, autocomplete: "name" });
  const phone = h("input", { type: "tel", required: true, maxlength: 31, autocomplete: "tel", inputmode: "tel" });
  const email = h("input", { type: "email", required: true, maxlength: 254, autocomplete: "email" });
  const password = h("input", { type: "password", required: true, minlength: MIN_PASSWORD, maxlength: 128, autocomplete: "new-password" });
  const submit = h("button", { type: "submit", class: "primary", id: "signup-submit" }, t("signup.submit"));
  const signIn = h("button", { type: "button", id: "signup-back" }, t("signup.haveAccount"));
  signIn.addEventListener("click", back);
  const form = h("form", { class: "card", id: "signup-form", "data-role": role, "aria-labelledby": "signup-h" },
    h("h2", { id: "signup-h" }, t(`signup.title.${role}`)),
    h("p", { class: "muted" }, t(`signup.next.${role}`)),
    field("signup-name", "signup.name", name),
    field("signup-phone", "signup.phone", phone),
    field("signup-email", "login.email", email),
    field("signup-password", "login.password", password),
    h("p", { class: "muted", id: "signup-password-hint" }, t("signup.passwordHint", { n: MIN_PASSWORD })),
    error, h("div", { class: "actions" }, submit, signIn));
  password.setAttribute("aria-describedby", "signup-password-hint");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const account = { name: name.value.trim(), phone: phone.value.trim(), email: email.value.trim(), password: password.value };
    const token = await act(submit, error, async () => {
      await api.post(`/v1/auth/register/${role}`, account, { anonymous: true });
      return api.login(account.email, account.password, [role]);
    }, { context: "signup" });
    if (token) done(token);
  });
  fill(container, form);
  name.focus();
}
