// The console's only ways to reach the controller: GET /si/v1/..., and the trace,
// a POST that runs the pipeline interpreter and changes nothing.
const BASE = "/si/v1/";
const TOKEN_KEY = "ryu-si-token";

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? `${status}: ${body.field ? body.field + ": " : ""}${body.error}`
                             : `HTTP ${status}`);
    this.status = status;
  }
}

async function answer(resp) {
  const text = await resp.text();
  const body = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

export async function get(path) {
  return answer(await fetch(BASE + path, {headers: {Accept: "application/json"}}));
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export async function trace(request) {
  const headers = {"Content-Type": "application/json", Accept: "application/json"};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  return answer(await fetch(BASE + "trace", {method: "POST", headers,
                                              body: JSON.stringify(request)}));
}
