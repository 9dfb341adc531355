// The REST client shared by the four apps: one bearer token per app, problem+json errors.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function createApi(app) {
  const key = `gasdispatch.${app}.session`;
  const load = () => JSON.parse(localStorage.getItem(key) || "null");

  async function request(method, path, body, { raw = false } = {}) {
    const session = load();
    const headers = { Accept: "application/json, application/problem+json" };
    if (session) headers.Authorization = `Bearer ${session.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.status === 401 && session) {
      localStorage.removeItem(key);  // expired: the page shows the sign-in form again
      window.dispatchEvent(new CustomEvent("gasdispatch:signed-out"));
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
    post: (path, body = {}) => request("POST", path, body),
    patch: (path, body) => request("PATCH", path, body),
    del: (path) => request("DELETE", path),
    raw: (path) => request("GET", path, undefined, { raw: true }),
    async login(email, password, roles) {
      const token = await request("POST", "/v1/auth/login", { email, password });
      if (!roles.includes(token.role)) throw new ApiError(403, { detail: "wrong-role" });
      localStorage.setItem(key, JSON.stringify({ token: token.access_token, role: token.role, email }));
      return token;
    },
    signOut() { localStorage.removeItem(key); },
    socketUrl(path) {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      return `${scheme}//${location.host}${path}?access_token=${encodeURIComponent(load()?.token || "")}`;
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
