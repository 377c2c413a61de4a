// The hub's API as the page uses it. The page is served by the hub, so every request
// goes to its own origin (the hub refuses any other). A hub that listens beyond loopback
// wants its reader token: the page asks once and hands it to the hub, which keeps it in
// an HttpOnly, SameSite=Strict cookie: the token is never in a URL, nor in the page's
// storage.

export class Unauthorized extends Error {}

export class ApiError extends Error {
  position: number | null;
  constructor(message: string, position: number | null) {
    super(message);
    this.position = position;
  }
}

/** Gives the hub its reader token; true when it took it (and set its cookie). */
export async function login(token: string): Promise<boolean> {
  const r = await fetch("/api/session", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) });
  return r.ok;
}

export function url(path: string, params: Record<string, string | number | undefined> = {}): string {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") u.searchParams.set(k, String(v));
  return u.toString();
}

export function wsUrl(path: string, params: Record<string, string | number | undefined>): string {
  const u = new URL(url(path, params));
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}

export async function getJson<T>(path: string, params: Record<string, string | number | undefined> = {}): Promise<T> {
  const r = await fetch(url(path, params));
  if (r.status === 401) throw new Unauthorized("this hub wants its token");
  if (!r.ok) {
    let body: { error?: string; position?: number } = {};
    try {
      body = await r.json();
    } catch {
      /* not JSON: the status says it */
    }
    throw new ApiError(body.error ?? `${path}: HTTP ${r.status}`, typeof body.position === "number" ? body.position : null);
  }
  return (await r.json()) as T;
}

export type FilterCheck = { ok: true } | { ok: false; error: string; position: number | null };

/** Asks the hub whether it takes this filter (its compiler is the one that counts). */
export async function checkFilter(expr: string): Promise<FilterCheck> {
  if (expr.trim() === "") return { ok: true };
  const r = await getJson<{ ok: boolean; error?: string; position?: number }>("/api/check", { filter: expr });
  return r.ok ? { ok: true } : { ok: false, error: r.error ?? "bad filter", position: typeof r.position === "number" ? r.position : null };
}

export interface MapNode {
  id: string;
  namespace: string;
  name: string;
  kind: string;
}

export interface MapEdge {
  source: string;
  destination: string;
  protocols: string[];
  requests: number;
  rate: number;
  errors: number;
  error_ratio: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

export interface ServiceMap {
  window_seconds: number;
  nodes: MapNode[];
  edges: MapEdge[];
}

export interface SignalPoint {
  t: number;
  requests: number;
  rate: number;
  errors: number;
  error_ratio: number | null;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

export interface Signals {
  window_seconds: number;
  step_seconds: number;
  points: SignalPoint[];
}
