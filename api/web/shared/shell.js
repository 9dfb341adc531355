// The frame every app shares: language switch, sign-in, sign-out.
import { ApiError, createApi, NetworkError } from "./api.js";
import { languageSwitch, t, translatePage } from "./i18n.js";
import { errorText, fill, h, signIn } from "./ui.js";

/** Signs in (once) with one of `roles`, then calls `boot(api)`; `rerender()` on a language change. */
export async function startApp(name, roles, { boot, rerender }) {
  const api = createApi(name);
  const main = document.getElementById("main");
  const signOut = document.getElementById("sign-out");
  let booted = false;
  languageSwitch(document.getElementById("lang"), () => (booted ? rerender() : run()));
  translatePage();

  async function run() {
    if (!api.session() || !roles.includes(api.session().role)) {
      signOut.classList.add("hidden");
      await signIn(main, api, roles);
    }
    signOut.classList.remove("hidden");
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
