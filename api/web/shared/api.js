// The REST client shared by the four apps: one session per app, problem+json errors. The access
// token is short-lived; the refresh token renews it shortly before it expires or when the server
// refuses it. A refresh token is spent by its first use (a second use signs every session of the
// account out), so renewals are serialised across this app's tabs.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** fetch() itself failed: no connection, DNS, the server unreachable ("Failed to fetch"). */
export class NetworkError extends Error {}

async function call(path, init) {
  try {
    return await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new NetworkError(error.message, { cause: error });
  }
}

const RENEW_BEFORE_MS = 60_000;
const JSON_HEADERS = { Accept: "application/json, application/problem+json", "Content-Type": "application/json" };

export function createApi(app) {
  const key = `gasdispatch.${app}.session`;
  const load = () => JSON.parse(localStorage.getItem(key) || "null");
  const store = (token, email) => localStorage.setItem(key, JSON.stringify({
    token: token.access_token, refresh: token.refresh_token, expiresAt: Date.now() + token.expires_in * 1000,
    role: token.role, email,
  }));

  function signedOut() {
    localStorage.removeItem(key);  // the page shows the sign-in form again
    window.dispatchEvent(new CustomEvent("gasdispatch:signed-out"));
  }

  const exclusive = (task) => (navigator.locks ? navigator.locks.request(`${key}.renew`, task) : task());
  let renewing = null;

  /** A token to use instead of `stale`: renewed once, whoever asks; null when signed out. */
  function renew(stale) {
    renewing ??= exclusive(async () => {
      const session = load();
      if (!session) return null;
      if (session.token !== stale) return session.token;  // another tab renewed it meanwhile
      const response = await call("/v1/auth/refresh", {
        method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ refresh_token: session.refresh }),
      });
      if (response.status === 401 || response.status === 422) {
        signedOut();
        return null;
      }
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
      store(await response.json(), session.email);
      return load().token;
    }).finally(() => { renewing = null; });
    return renewing;
  }

  async function freshToken() {
    const session = load();
    if (!session) return null;
    return session.expiresAt - Date.now() > RENEW_BEFORE_MS ? session.token : renew(session.token);
  }

  function send(method, path, body, token, idempotencyKey) {
    const headers = { Accept: "application/json, application/problem+json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    // A Blob (a photo) goes as it is, typed by its own media type; anything else as JSON.
    const raw = body instanceof Blob;
    if (body !== undefined) headers["Content-Type"] = raw ? body.type : "application/json";
    return call(path, { method, headers, body: body === undefined || raw ? body : JSON.stringify(body) });
  }

  async function request(method, path, body, { raw = false, anonymous = false, idempotencyKey } = {}) {
    const token = anonymous ? null : await freshToken();
    let response = await send(method, path, body, token, idempotencyKey);
    if (response.status === 401 && token) {
      const renewed = await renew(token);
      if (renewed) response = await send(method, path, body, renewed, idempotencyKey);
      if (response.status === 401 && load()) signedOut();
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({ title: response.statusText }));
      throw new ApiError(response.status, problem);
    }
    if (raw) return response;
    return response.status === 204 ? null : { ...(await response.json()), http_status: response.status };
  }

  return {
    session: load,
    get: (path) => request("GET", path),
    /** options.idempotencyKey: sent as Idempotency-Key, so a repeat is answered, not done again. */
    post: (path, body = {}, options = {}) => request("POST", path, body, options),
    patch: (path, body) => request("PATCH", path, body),
    del: (path) => request("DELETE", path),
    put: (path, body) => request("PUT", path, body),
    raw: (path) => request("GET", path, undefined, { raw: true }),
    async login(email, password, roles) {
      const token = await request("POST", "/v1/auth/login", { email, password }, { anonymous: true });
      if (!roles.includes(token.role)) throw new ApiError(403, { detail: "wrong-role" });
      store(token, email);
      return token;
    },
    /** Signs the account out on the server too (every session of it), without waiting for the answer. */
    signOut() {
      const session = load();
      localStorage.removeItem(key);
      if (session) {
        fetch("/v1/auth/logout", { method: "POST", keepalive: true, headers: { Authorization: `Bearer ${session.token}` } })
          .catch(() => {});
      }
    },
    /** Where a LiveSocket connects, the token for its first message, and how to renew it when refused. */
    async socketUrl(path) {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const token = await freshToken();
      return { url: `${scheme}//${location.host}${path}`, token, refused: () => renew(token) };
    },
    // Every list route pages with next_cursor; consoles want all rows up to a cap.
    async all(path, cap = 1000) {
      const rows = [];
      let cursor = null;
      do {
        const sep = path.includes("?") ? "&" : "?";
        const page = await request("GET", cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
        rows.push(...page.data);
        cursor = page.next_cursor;
      } while (cursor && rows.length < cap);
      return rows;
    },
  };
}
