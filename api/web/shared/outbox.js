// Actions taken without a connection (job steps, the work report, photos), kept in IndexedDB
// (photos are Blobs; localStorage holds only text) and sent in the order they were taken once the
// connection returns. Each carries the Idempotency-Key made when he tapped, the first try included:
// a step whose answer was lost on the way back is answered from the server's record on the replay,
// never done twice. Photos are named by their sha256, computed here, so a report written offline
// can name them before they are uploaded; the same image uploaded again is the same photo.
import { NetworkError } from "./api.js";

const DB = "gasdispatch-outbox";
const ACTIONS = "actions";  // {seq, owner, path, body, key, meta}, in the order taken
const PHOTOS = "photos";  // sha256 -> Blob: thumbnails of a draft's photos after a reload
const RETRY_MS = 15_000;  // while something waits: the offline/online signals are not always given

let database = null;

function db() {
  database ??= new Promise((resolve, reject) => {
    const opening = indexedDB.open(DB, 1);
    opening.onupgradeneeded = () => {
      opening.result.createObjectStore(ACTIONS, { keyPath: "seq", autoIncrement: true });
      opening.result.createObjectStore(PHOTOS);
    };
    opening.onsuccess = () => resolve(opening.result);
    opening.onerror = () => reject(opening.error);
  });
  return database;
}

/** Runs `work(store)` in one transaction; resolves with the value of the request it returns. */
async function stored(name, mode, work) {
  const tx = (await db()).transaction(name, mode);
  const request = work(tx.objectStore(name));
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(request?.result);
    tx.onerror = () => reject(tx.error);
  });
}

export async function sha256(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The outbox of the signed-in account (`api.session().email`): entries of another account on
 * this phone wait for that account. Callbacks: onChange(entries) whenever the queue changes,
 * onSent(entry, reply), onFailed(entry, error) when the server refused one (it is dropped),
 * onDrained(sent) after a replay that sent something emptied the queue. */
export function createOutbox(api, { onChange = () => {}, onSent = () => {}, onFailed = () => {}, onDrained = () => {} } = {}) {
  const owner = () => api.session()?.email;
  let flushing = null;
  let timer = null;

  async function entries() {
    const all = await stored(ACTIONS, "readonly", (store) => store.getAll());
    return all.filter((entry) => entry.owner === owner());
  }

  async function changed() {
    const list = await entries();
    clearInterval(timer);
    timer = list.length ? setInterval(flush, RETRY_MS) : null;
    onChange(list);
    return list;
  }

  async function enqueue(path, body, key, meta) {
    await stored(ACTIONS, "readwrite", (store) => store.add({ owner: owner(), path, body, key, meta, at: Date.now() }));
    await changed();
    return { queued: true };
  }

  /** POSTs now when nothing waits before it, else (or when the network fails) queues it: the
   * server's reply, or {queued: true}. A refusal by the server is thrown as by api.post. */
  async function send(path, body, meta = {}) {
    const key = crypto.randomUUID();
    if (!navigator.onLine || (await entries()).length) {
      const queued = await enqueue(path, body, key, meta);
      flush();
      return queued;
    }
    try {
      return await api.post(path, body, { idempotencyKey: key });
    } catch (error) {
      if (!(error instanceof NetworkError)) throw error;
      return enqueue(path, body, key, meta);
    }
  }

  /** A photo of the job: {ref} at once, uploaded now or queued; kept for the draft's thumbnails. */
  async function photo(orderId, blob) {
    const ref = await sha256(blob);
    await stored(PHOTOS, "readwrite", (store) => store.put(blob, ref));
    const reply = await send(`/v1/jobs/${orderId}/photos`, blob, { order: orderId, step: "photo", ref });
    return { ref, ...reply };  // the server's ref when it answered (the same digest)
  }

  /** Sends the queue in order, what is queued meanwhile too; stops at the first network failure,
   * server error (5xx, 429) or lost session (401: kept for after the sign-in), to try again on
   * the next signal. Once at a time. */
  function flush() {
    flushing ??= (async () => {
      let sent = 0;
      for (let entry; (entry = (await entries())[0]);) {
        try {
          const reply = await api.post(entry.path, entry.body, { idempotencyKey: entry.key });
          await stored(ACTIONS, "readwrite", (store) => store.delete(entry.seq));
          sent += 1;
          onSent(entry, reply);
        } catch (error) {
          const transient = error instanceof NetworkError || !error.status || error.status >= 500 || [401, 429].includes(error.status);
          if (transient) break;
          await stored(ACTIONS, "readwrite", (store) => store.delete(entry.seq));
          onFailed(entry, error);
        }
      }
      const left = await changed();
      if (sent && !left.length) onDrained(sent);
    })().finally(() => { flushing = null; });
    return flushing;
  }

  window.addEventListener("online", flush);
  return {
    send, photo, flush, entries,
    /** A stored photo, or undefined (taken on another phone, or forgotten). */
    photoBlob: (ref) => stored(PHOTOS, "readonly", (store) => store.get(ref)),
    forgetPhotos: (refs) => stored(PHOTOS, "readwrite", (store) => { for (const ref of refs) store.delete(ref); }),
    start: changed,
  };
}
