// The frame every app shares: language switch, sign-in, sign-out.
import { createApi } from "./api.js";
import { languageSwitch, translatePage } from "./i18n.js";
import { signIn } from "./ui.js";

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
    await boot(api);
  }
  signOut.addEventListener("click", () => { api.signOut(); location.reload(); });
  window.addEventListener("gasdispatch:signed-out", () => location.reload());
  await run();
}
