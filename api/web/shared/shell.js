// The frame every app shares: language switch, sign-in (and sign-up where accounts are
// self-registered), the notification inbox, sign-out.
import { ApiError, createApi, NetworkError } from "./api.js";
import { languageSwitch, t, translatePage } from "./i18n.js";
import { mountInbox } from "./inbox.js";
import { showSignUp } from "./signup.js";
import { errorText, fill, h, signIn } from "./ui.js";

/** Signs in (once) with one of `roles`, then calls `boot(api)`; `rerender()` on a language change.
 * `signUp`: the role a new account is registered as from the sign-in form; `orderHref(id)`: where
 * the inbox links a notice about an order. */
export async function startApp(name, roles, { boot, rerender, signUp = null, orderHref = null }) {
  const api = createApi(name);
  const main = document.getElementById("main");
  const signOut = document.getElementById("sign-out");
  let booted = false;
  let inbox = null;
  languageSwitch(document.getElementById("lang"), () => {
    if (!booted) return run();
    inbox?.rerender();
    return rerender();
  });
  translatePage();

  async function run() {
    if (!api.session() || !roles.includes(api.session().role)) {
      signOut.classList.add("hidden");
      await signIn(main, api, roles, { signUp: signUp && ((container, steps) => showSignUp(container, api, signUp, steps)) });
    }
    signOut.classList.remove("hidden");
    inbox ??= mountInbox(signOut, api, { canMarkRead: api.session().role !== "auditor", orderHref });
    booted = true;
    try {
      await boot(api);
    } catch (error) {  // the first loads failed (offline, server down): say why in the user's words
      fill(main, h("section", { class: "card", id: "boot-error", role: "alert" },
        h("p", { class: "error" }, errorText(error)),
        h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: () => location.reload() },
          t("common.retry")))));
      if (!(error instanceof ApiError || error instanceof NetworkError)) throw error;  // a fault in the page: surfaced
    }
  }
  signOut.addEventListener("click", () => { api.signOut(); location.reload(); });
  window.addEventListener("gasdispatch:signed-out", () => location.reload());
  await run();
}
