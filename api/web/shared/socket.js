// A websocket that reconnects by itself with exponential backoff (0.5 s doubling to 30 s, with
// jitter). Requests carry an id and resolve on the server's ack/error with that id; requests not
// yet answered are sent again after a reconnect — the server answers a repeated id with its first
// reply, so nothing is done twice.

let counter = 0;
export const messageId = (prefix = "m") => `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`;

export class LiveSocket {
  constructor(urlFn, { onMessage = () => {}, onState = () => {}, onOpen = () => {} } = {}) {
    this.urlFn = urlFn;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onOpen = onOpen;
    this.pending = new Map();  // id -> {message, resolve, reject}
    this.delay = 500;
    this.closed = false;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    this.onState("connecting");
    const ws = new WebSocket(this.urlFn());
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 500;
      this.onState("open");
      this.onOpen();
      for (const { message } of this.pending.values()) ws.send(JSON.stringify(message));
    };
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      const waiting = message.id && this.pending.get(message.id);
      if (waiting && (message.type === "ack" || message.type === "error" || message.type === "pong")) {
        this.pending.delete(message.id);
        if (message.type === "error") waiting.reject(Object.assign(new Error(message.detail || message.code), { reply: message }));
        else waiting.resolve(message);
        return;
      }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.onState("closed", event.code);
      if (this.closed || event.code === 4401 || event.code === 4403) return;  // refused: retrying cannot help
      const wait = this.delay * (0.75 + Math.random() / 2);
      this.delay = Math.min(this.delay * 2, 30000);
      this.timer = setTimeout(() => this.connect(), wait);
    };
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
    clearTimeout(this.timer);
    this.ws?.close();
  }
}
