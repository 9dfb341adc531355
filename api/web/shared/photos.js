// Photos sent to the server and shown back: a phone photo made small enough to upload, and
// thumbnails of a job's photos fetched with the signed-in token (an <img src> cannot send it).
import { t } from "./i18n.js";
import { UserError, h } from "./ui.js";

// The server's limit (dispatch/certificate_photos.py): a phone photo is scaled down and re-encoded
// as JPEG below it, which also drops its metadata (the place it was taken).
const PHOTO_MAX_BYTES = 800_000;
const PHOTO_MAX_SIDE = 2000;
const PHOTO_ENCODE_TRIES = 5;

export async function photoForUpload(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new UserError(t("photo.unreadable"));
  }
  try {
    let scale = Math.min(1, PHOTO_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    let quality = 0.85;
    for (let attempt = 1; ; attempt++) {
      const canvas = h("canvas", { width: Math.max(1, Math.round(bitmap.width * scale)), height: Math.max(1, Math.round(bitmap.height * scale)) });
      const context = canvas.getContext("2d");
      context.fillStyle = "#fff";  // a transparent PNG would turn black in a JPEG
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
      if (!blob) throw new UserError(t("photo.unreadable"));
      // Past the last try the server's answer names what is wrong.
      if (blob.size <= PHOTO_MAX_BYTES || attempt >= PHOTO_ENCODE_TRIES) return blob;
      scale *= 0.75;
      quality = Math.max(0.6, quality - 0.1);
    }
  } finally {
    bitmap.close();
  }
}

// "<order id>/<ref>" -> the object URL of a job photo: a ref names fixed bytes, so each is fetched
// once per page and kept across redraws.
const jobPhotos = new Map();

function jobPhotoUrl(api, orderId, ref) {
  const key = `${orderId}/${ref}`;
  if (!jobPhotos.has(key)) {
    jobPhotos.set(key, api.raw(`/v1/orders/${orderId}/photos/${ref}`).then((r) => r.blob()).then((b) => URL.createObjectURL(b)));
    jobPhotos.get(key).catch(() => jobPhotos.delete(key));  // tried again at the next redraw
  }
  return jobPhotos.get(key);
}

/** Thumbnails of a job's photos, each opening the full image in a new tab; nothing when there are none. */
export function jobPhotoThumbs(api, orderId, refs, className = "job-photos") {
  if (!refs?.length) return null;
  return h("div", { class: `photo-thumbs ${className}` }, refs.map((ref, i) => {
    const img = h("img", { alt: t("photo.nth", { n: i + 1 }), class: "photo-thumb" });
    const link = h("a", { target: "_blank", rel: "noopener", "aria-busy": "true" }, img);
    jobPhotoUrl(api, orderId, ref).then((url) => { img.src = url; link.href = url; link.removeAttribute("aria-busy"); })
      .catch(() => { img.replaceWith(t("photo.failed")); link.removeAttribute("aria-busy"); });
    return link;
  }));
}
