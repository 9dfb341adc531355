import { languageSwitch, translatePage } from "./i18n.js";

languageSwitch(document.getElementById("lang"));
translatePage();
