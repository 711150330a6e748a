/** roi's public HTTP API, as any client calls it: JSON in and out, the bearer token in `Authorization`. */

export class ApiError extends Error {
  /**
   * @param {number} status the HTTP status, 0 when the server could not be reached
   * @param {string} detail the error body's `detail`, or a sentence saying what happened
   * @param {Array<{message: string, key?: string, source?: string}>} extra the fields a 400 names
   */
  constructor(status, detail, extra = [], retryAfterS = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.extra = Array.isArray(extra) ? extra : [];
    this.retryAfterS = retryAfterS;
  }
}

export const UNREACHABLE = "The server cannot be reached. The console will keep trying; check your connection.";

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page, say): the status line has to do
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  const detail = body?.detail || `${response.status} ${response.statusText || "error"}`.trim();
  return new ApiError(response.status, detail, body?.extra, Number.isFinite(retryAfter) ? retryAfter : null);
}

/**
 * @param {object} options
 * @param {() => string|null} options.token the current bearer token
 * @param {(error: ApiError) => void} options.onTokenRefused called when a request that carried a token got 401
 */
export function createApi({ token, onTokenRefused }) {
  async function request(method, path, { json, query, accept = "application/json", raw = false } = {}) {
    const url = new URL(path, location.origin);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
    }
    const bearer = token();
    const headers = { Accept: accept };
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    if (json !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, UNREACHABLE);
    }
    if (!response.ok) {
      const error = await errorOf(response);
      if (response.status === 401 && bearer) onTokenRefused?.(error);
      throw error;
    }
    if (raw) return response;
    if (response.status === 204 || response.status === 205) return null;
    return response.json();
  }

  return {
    request,
    register: (email, password, name) => request("POST", "/api/auth/register", { json: { email, password, name } }),
    login: (email, password) => request("POST", "/api/auth/login", { json: { email, password } }),
    /** The contract's logout; a server without it yet answers 404, and the token is simply forgotten. */
    async logout() {
      try {
        await request("POST", "/api/auth/logout");
      } catch (error) {
        if (![0, 401, 404, 405].includes(error.status)) throw error;
      }
    },
    me: () => request("GET", "/api/me"),
    changePassword: (currentPassword, newPassword) =>
      request("POST", "/api/auth/password", { json: { current_password: currentPassword, new_password: newPassword } }),
    listWorkflows: ({ cursor, status, limit }) => request("GET", "/api/workflows", { query: { cursor, status, limit } }),
    workflow: (id) => request("GET", `/api/workflows/${id}`),
    createWorkflow: (body) => request("POST", "/api/workflows", { json: body }),
    run: (id) => request("POST", `/api/workflows/${id}/run`),
    cancel: (id) => request("POST", `/api/workflows/${id}/cancel`),
    remove: (id) => request("DELETE", `/api/workflows/${id}`),
    result: (id) => request("GET", `/api/workflows/${id}/result`),
    cashFlows: (id) => request("GET", `/api/workflows/${id}/cash-flows`),
    listUploads: ({ cursor, limit }) => request("GET", "/api/uploads", { query: { cursor, limit } }),
    upload: (id) => request("GET", `/api/uploads/${id}`),
    uploadContent: (id) => request("GET", `/api/uploads/${id}/content`, { accept: "*/*", raw: true }),
  };
}
