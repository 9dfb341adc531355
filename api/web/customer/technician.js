// Who took the order, as its customer sees him: his photo, his rating and the certifications he
// may work under (GET /v1/orders/{id}/technician/profile); never his phone number.
import { currentLang, t } from "../shared/i18n.js";
import { fill, h } from "../shared/ui.js";

const photos = new Map();  // order id -> object URL promise of its technician's photo, fetched once per page

function photoUrl(api, orderId) {
  if (!photos.has(orderId)) {
    photos.set(orderId, api.raw(`/v1/orders/${orderId}/technician/photo`).then((r) => r.blob()).then((b) => URL.createObjectURL(b)));
    photos.get(orderId).catch(() => photos.delete(orderId));  // tried again at the next redraw
  }
  return photos.get(orderId);
}

export async function renderTechnicianProfile(section, api, order) {
  const profile = order.technician_id
    ? await api.get(`/v1/orders/${order.id}/technician/profile`).catch(() => null) : null;
  section.classList.toggle("hidden", !profile);
  if (!profile) return;
  const photo = h("img", { class: "tech-photo", id: "tech-photo", alt: t("techProfile.photoOf", { name: profile.name }) });
  if (profile.has_photo) photoUrl(api, order.id).then((url) => { photo.src = url; }).catch(() => photo.remove());
  const day = new Intl.DateTimeFormat(currentLang(), { dateStyle: "medium" });
  const stars = profile.rating && new Intl.NumberFormat(currentLang(), { minimumFractionDigits: 1, maximumFractionDigits: 1 })
    .format(profile.rating.score);
  fill(section, h("h2", { id: "tech-profile-h" }, t("techProfile.title")),
    h("div", { class: "tech-profile" },
      profile.has_photo ? photo : h("div", { class: "tech-photo none", role: "img", "aria-label": t("techProfile.noPhoto") }),
      h("div", {},
        h("p", {}, h("strong", { id: "tech-profile-name" }, profile.name), profile.station ? ` · ${profile.station}` : ""),
        h("p", { id: "tech-rating" }, profile.rating
          ? t("techProfile.rating", { stars, n: profile.rating.count }) : h("span", { class: "muted" }, t("techProfile.noRating"))))),
    h("h3", {}, t("techProfile.certifications")),
    profile.certifications.length
      ? h("ul", { class: "plain", id: "tech-certs" }, profile.certifications.map((c) => h("li", { dataset: { kind: c.kind } },
        h("span", { class: "pill ok" }, t(`cert.${c.kind}`)), " ",
        h("span", { class: "muted" }, t("techProfile.certValid", { issuer: c.issuer, until: day.format(new Date(c.valid_until)) })))))
      : h("p", { class: "notice" }, t("customer.noCertificate")));
}
