// A websocket that reconnects by itself with exponential backoff (0.5 s doubling to 30 s, with
// jitter). Requests carry an id and resolve on the server's ack/error with that id; requests not
// yet answered are sent again after a reconnect — the server answers a repeated id with its first
// reply, so nothing is done twice. The access token travels in the first message, never in the
// URL; when the server closes the socket for its token (4401: expired or revoked) the token is
// renewed and the socket reconnects, unless the session is over. Order updates carry `seq`; the
// highest one seen is sent in a `resume` after each reconnect, so the server resends what was
// missed meanwhile (see api/ws/protocol.py). The phone's own offline/online signals cut the wait:
// a socket kept open through a dead network would say "connected" and swallow requests, and
// the backoff (up to 30 s) is skipped the moment the network returns.

let counter = 0;
export const messageId = (prefix = "m") => `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`;

const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_FORBIDDEN = 4403;

export class LiveSocket {
  /** targetFn() resolves to { url, token, refused }, as api.socketUrl(path) gives: refused() renews
   * the token after a 4401 and resolves to a falsy value when the user is signed out. */
  constructor(targetFn, { onMessage = () => {}, onState = () => {}, onOpen = () => {} } = {}) {
    this.targetFn = targetFn;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onOpen = onOpen;
    this.pending = new Map();  // id -> {message, resolve, reject}
    this.delay = 500;
    this.lastSeq = null;  // the highest `seq` received, asked for again after a reconnect
    this.closed = false;
    this.timer = null;
    this.onOffline = () => this.ws?.close();
    this.onOnline = () => {  // only while waiting to retry: a connection under way is left alone
      if (this.timer === null || this.closed) return;
      clearTimeout(this.timer);
      this.timer = null;
      this.delay = 500;
      this.connect();
    };
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
    this.connect();
  }

  async connect() {
    if (this.closed) return;
    this.onState("connecting");
    let target;
    try {
      target = await this.targetFn();
    } catch {
      this.retry();  // the token could not be renewed just now (network): try again later
      return;
    }
    if (this.closed) return;
    const { url, token, refused } = target;
    const authId = messageId("auth");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ v: 1, type: "auth", id: authId, token: token || "" }));
      this.onState("open");
      this.onOpen();
      for (const { message } of this.pending.values()) ws.send(JSON.stringify(message));
      if (this.lastSeq !== null) ws.send(JSON.stringify({ v: 1, type: "resume", id: messageId("resume"), after: this.lastSeq }));
    };
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.id === authId) {
        if (message.type === "ack") this.delay = 500;  // backoff resets only once the server took the token
        return;
      }
      if (Number.isInteger(message.seq)) this.lastSeq = Math.max(this.lastSeq ?? 0, message.seq);
      const waiting = message.id && this.pending.get(message.id);
      if (waiting && (message.type === "ack" || message.type === "error" || message.type === "pong")) {
        this.pending.delete(message.id);
        if (message.type === "error") waiting.reject(Object.assign(new Error(message.detail || message.code), { reply: message }));
        else waiting.resolve(message);
        return;
      }
      if (message.type === "ack" && String(message.id).startsWith("resume-")) return;
      this.onMessage(message);
    };
    ws.onclose = async (event) => {
      if (this.ws !== ws) return;
      this.onState("closed", event.code);
      if (this.closed || event.code === CLOSE_FORBIDDEN) return;  // refused: retrying cannot help
      if (event.code === CLOSE_UNAUTHENTICATED && !(await refused().catch(() => true))) return;  // signed out
      this.retry();
    };
  }

  retry() {
    if (this.closed) return;
    const wait = this.delay * (0.75 + Math.random() / 2);
    this.delay = Math.min(this.delay * 2, 30000);
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, wait);
  }

  get open() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  /** Sends now or after the next (re)connect; resolves with the ack. */
  request(fields) {
    const message = { v: 1, id: messageId(fields.type), ...fields };
    return new Promise((resolve, reject) => {
      this.pending.set(message.id, { message, resolve, reject });
      if (this.open) this.ws.send(JSON.stringify(message));
    });
  }

  /** Fire and forget, only while connected (positions: a stale one is worth nothing later). */
  send(fields) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify({ v: 1, id: messageId(fields.type), ...fields }));
    return true;
  }

  close() {
    this.closed = true;
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    clearTimeout(this.timer);
    this.ws?.close();
  }
}
