import { languageSwitch, translatePage } from "./i18n.js";
import { openSmellGas } from "./smellgas.js";

languageSwitch(document.getElementById("lang"));
translatePage();
// Nobody needs an account to learn what to do and whom to call; signing in adds the one-tap report.
document.getElementById("smell-gas").addEventListener("click", () => openSmellGas({ signInHref: "customer/#gas-leak" }));
