// A new technician's way to his first job, as a checklist: his account, his photo (shown to the
// customers of his orders), the station's training and the utility's exam (both recorded by the
// utility, which is who holds them: here he reads his results), his certificate with its photo,
// and the utility's verification, after which he may go online.
import { currentLang, t } from "../shared/i18n.js";
import { photoForUpload } from "../shared/photos.js";
import { act, field, fill, h, toast } from "../shared/ui.js";

const KINDS = ["repair", "inspection", "installation", "emergency"];

/** His training and exam records and his certificates, as the checklist reads them. */
export async function loadOnboarding(api) {
  const [records, certs] = await Promise.all([api.get("/v1/technicians/me/training-records"),
    api.get("/v1/technicians/me/certifications")]);
  return { records: records.data, certs: certs.data };
}

const day = (iso) => new Intl.DateTimeFormat(currentLang(), { dateStyle: "medium" }).format(new Date(iso));

function step(name, done, title, ...body) {
  return h("li", { class: `onboarding-step${done ? " done" : ""}`, dataset: { step: name, done: String(done) } },
    h("span", { class: `onboarding-mark pill ${done ? "ok" : ""}` }, t(done ? "onboarding.done" : "onboarding.todo")), " ",
    h("strong", {}, title), ...body);
}

// The overall state, from his certificates: none yet, waiting for the utility, refused, or verified.
function verification(certs) {
  if (certs.some((c) => c.status === "verified")) return "verified";
  if (certs.some((c) => c.status === "pending")) return "pending";
  return certs.some((c) => c.status === "rejected") ? "rejected" : "none";
}

/** Draws the checklist into `section`; `reload()` after each of his changes. */
export function renderOnboarding(section, api, me, { records, certs }, reload) {
  const trainings = records.filter((r) => r.record_type === "training");
  const exams = records.filter((r) => r.record_type === "exam");
  const passed = exams.find((r) => r.passed);
  const status = verification(certs);
  const pending = certs.filter((c) => c.status === "pending");
  fill(section, h("h2", { id: "onboarding-h" }, t("onboarding.title")),
    h("p", {}, h("span", { class: `pill ${{ verified: "ok", pending: "warn", rejected: "bad" }[status] ?? ""}`,
      id: "onboarding-status", dataset: { status } }, t(`onboarding.status.${status}`))),
    h("ol", { class: "plain onboarding", id: "onboarding-steps" },
      step("account", true, t("onboarding.account"), h("div", { class: "muted" }, me.name)),
      step("photo", me.photo_ref?.startsWith("portrait:") ?? false, t("onboarding.photo"), photoUpload(api, me, reload)),
      step("training", trainings.length > 0, t("onboarding.training"), trainings.length
        ? h("ul", { class: "plain" }, trainings.map((r) => h("li", {}, t("onboarding.trainingDone", { kind: t(`cert.${r.kind}`), date: day(r.held_at) }))))
        : h("p", { class: "muted" }, t("onboarding.trainingTodo"))),
      step("exam", Boolean(passed), t("onboarding.exam"), exams.length
        ? h("ul", { class: "plain", id: "onboarding-exams" }, exams.map((r) => h("li", { dataset: { passed: String(r.passed) } },
          t(r.passed ? "onboarding.examPassed" : "onboarding.examFailed", { kind: t(`cert.${r.kind}`), date: day(r.held_at) }),
          r.score === null ? "" : ` · ${t("onboarding.score", { score: r.score })}`)))
        : h("p", { class: "muted" }, t("onboarding.examTodo"))),
      step("certificate", pending.some((c) => c.has_photo) || status === "verified", t("onboarding.certificate"),
        certs.length ? h("ul", { class: "plain", id: "onboarding-certs" }, certs.map((c) => certItem(api, c, reload))) : null,
        pending.length || status === "verified" ? null : certificateForm(api, reload)),
      step("verification", status === "verified", t("onboarding.verification"),
        h("p", { class: "muted" }, t(`onboarding.verificationText.${status}`)))));
}

function photoUpload(api, me, reload) {
  const input = h("input", { type: "file", accept: "image/*" });
  const error = h("p", { class: "error", role: "alert" });
  input.addEventListener("change", async () => {
    const [file] = input.files;
    if (!file) return;
    const done = await act(null, error, async () => api.put("/v1/technicians/me/photo", await photoForUpload(file)));
    if (done) { toast(t("onboarding.photoOk")); await reload(); }
  });
  const has = me.photo_ref?.startsWith("portrait:");
  return [h("p", { class: "muted" }, t("onboarding.photoHint")),
    field("onboarding-photo", has ? "onboarding.photoReplace" : "onboarding.photoUpload", input), error];
}

function certItem(api, c, reload) {
  const tone = { pending: "warn", verified: "ok" }[c.status] ?? "bad";
  const head = [h("span", { class: `pill ${tone}` }, t(`certStatus.${c.status}`)), " ", t(`cert.${c.kind}`),
    h("div", { class: "muted" }, t("technician.certNumber", { number: c.number }), " · ", c.issuer),
    c.decision_reason ? h("div", { class: "notice" }, t("onboarding.reason", { reason: c.decision_reason })) : null];
  if (c.status !== "pending") return h("li", { dataset: { certification: c.id } }, head);
  const input = h("input", { type: "file", accept: "image/*" });
  const error = h("p", { class: "error", role: "alert" });
  input.addEventListener("change", async () => {
    const [file] = input.files;
    if (!file) return;
    const done = await act(null, error, async () => api.put(`/v1/technicians/me/certifications/${c.id}/photo`, await photoForUpload(file)));
    if (done) { toast(t("technician.certPhotoOk")); await reload(); }
  });
  return h("li", { dataset: { certification: c.id, photo: String(c.has_photo) } }, head,
    h("p", {}, h("span", { class: `pill ${c.has_photo ? "ok" : ""}` }, t(c.has_photo ? "technician.certPhotoUploaded" : "technician.certPhotoMissing"))),
    field(`onboarding-cert-photo-${c.id}`, c.has_photo ? "technician.certPhotoReplace" : "technician.certPhotoUpload", input),
    h("p", { class: "muted" }, t("technician.certPhotoHint")), error);
}

// A certificate he already holds (from another utility or the training centre), for the utility
// to verify; a passed exam here issues one by itself.
function certificateForm(api, reload) {
  const kind = h("select", { required: true }, KINDS.map((k) => new Option(t(`cert.${k}`), k)));
  const number = h("input", { required: true, maxlength: 64 });
  const issuer = h("input", { required: true, maxlength: 100 });
  const from = h("input", { type: "date", required: true });
  const until = h("input", { type: "date", required: true });
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary", id: "onboarding-cert-submit" }, t("onboarding.certSubmit"));
  const form = h("form", { id: "onboarding-cert-form" }, h("p", { class: "muted" }, t("onboarding.certHint")),
    field("onboarding-cert-kind", "onboarding.certKind", kind), field("onboarding-cert-number", "onboarding.certNumber", number),
    field("onboarding-cert-issuer", "onboarding.certIssuer", issuer),
    h("div", { class: "row" }, h("div", {}, field("onboarding-cert-from", "onboarding.certFrom", from)),
      h("div", {}, field("onboarding-cert-until", "onboarding.certUntil", until))),
    error, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // A date input's value is a calendar day; the certificate counts from its start in UTC.
    const created = await act(submit, error, () => api.post("/v1/technicians/me/certifications", {
      kind: kind.value, number: number.value.trim(), issuer: issuer.value.trim(),
      valid_from: `${from.value}T00:00:00Z`, valid_until: `${until.value}T00:00:00Z` }));
    if (created) await reload();
  });
  return form;
}
