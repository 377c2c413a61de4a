// One entry as a row of the live table: the columns of the terminal UI, computed once
// (in the stream's worker), with the entry's JSON kept as received for the detail panel.

export type Cls = "ok" | "redirect" | "client" | "server" | "failed" | "unknown";

export interface Row {
  /** arrival order on this page */
  seq: number;
  id: string;
  time: string;
  timestamp: string;
  protocol: string;
  method: string;
  what: string;
  status: string;
  cls: Cls;
  src: string;
  srcNs: string;
  dst: string;
  dstNs: string;
  /** µs, or null when no response was seen */
  latency: number | null;
  size: number;
  anomalies: string;
  raw: string;
}

type J = Record<string, unknown>;

const obj = (v: unknown): J | null => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as J) : null);
export const str = (v: unknown): string => (typeof v === "string" ? v : "");
export const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
export const at = (v: unknown, ...path: (string | number)[]): unknown => {
  let cur: unknown = v;
  for (const p of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string | number, unknown>)[p];
  }
  return cur;
};

/** The best name of one end: pod, else Service, else its `name`, else ip:port. */
export function endName(end: unknown): [string, string] {
  const ns = str(at(end, "namespace"));
  const ip = str(at(end, "ip"));
  let name = [str(at(end, "pod", "name")), str(at(end, "service", "name")), str(at(end, "name"))].find((n) => n !== "") ?? "";
  if (name === "" || name === ip) {
    const port = num(at(end, "port")) ?? 0;
    name = ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
  }
  return [name, ns];
}

export function toRow(e: unknown, raw: string, seq: number): Row | null {
  const o = obj(e);
  if (!o) return null;
  const ts = str(o.timestamp);
  const protocol = str(o.protocol);
  const req = obj(o.request);
  const resp = obj(o.response);
  let method = "";
  let what = "";
  if (protocol === "http" && req) {
    method = str(req.method);
    what = str(req.url) || str(req.path);
  } else if (protocol === "grpc" && req) {
    method = "RPC";
    what = str(req.path);
  } else if (protocol === "dns") {
    const q = at(req, "questions", 0) ?? at(resp, "questions", 0);
    method = str(at(q, "type"));
    what = str(at(q, "name"));
  } else if (req) {
    // every other protocol: what was asked and of what (a command and its key, a query
    // and its table, an API and its topic)
    method = str(req.method);
    what = str(req.target);
  }
  const schema1 = protocol === "http" || protocol === "grpc" || protocol === "dns";
  const anomalyList = Array.isArray(o.anomalies) ? o.anomalies : [];
  let status = "-";
  let cls: Cls = "failed";
  if (!resp && !schema1 && !anomalyList.includes("no_response")) {
    // a message that has no reply (a publish, a push, a WebSocket message)
    cls = "ok";
  }
  if (resp && !schema1) {
    status = str(resp.status) || "-";
    cls = resp.error !== null && resp.error !== undefined ? "failed" : "ok";
  } else if (resp) {
    if (protocol === "dns") {
      status = str(resp.rcode);
      cls = status === "NOERROR" || status === "NXDOMAIN" ? "ok" : "failed";
    } else if (protocol === "grpc") {
      const g = num(resp.grpc_status);
      if (g === 0) [status, cls] = ["OK", "ok"];
      else if (g !== null) [status, cls] = [`grpc ${g}`, "failed"];
      // trailers unread (joined mid-connection): a 200 says nothing either way
      else if (num(resp.status_code) === 200) [status, cls] = ["200 ?", "unknown"];
      else [status, cls] = [String(num(resp.status_code) ?? "-"), "failed"];
    } else {
      const c = num(resp.status_code);
      status = c === null ? "-" : String(c);
      cls = c === null ? "unknown" : c >= 500 ? "server" : c >= 400 ? "client" : c >= 300 ? "redirect" : c >= 100 ? "ok" : "unknown";
    }
  }
  const [src, srcNs] = endName(o.src);
  const [dst, dstNs] = endName(o.dst);
  const anomalies = Array.isArray(o.anomalies) ? o.anomalies.filter((a) => typeof a === "string").join(",") : "";
  return {
    seq,
    id: str(o.id),
    time: ts.length >= 23 ? ts.slice(11, 23) : ts,
    timestamp: ts,
    protocol,
    method,
    what,
    status,
    cls,
    src,
    srcNs,
    dst,
    dstNs,
    latency: num(o.elapsed_time),
    size: (num(o.request_size) ?? 0) + (num(o.response_size) ?? 0),
    anomalies,
    raw,
  };
}

export function latency(us: number | null): string {
  if (us === null) return "-";
  if (us < 1000) return `${us}µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(1)}ms`;
  return `${(us / 1_000_000).toFixed(2)}s`;
}

export function size(n: number): string {
  if (n < 1024) return `${n}B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)}K`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)}M`;
  return `${(n / 1024 / 1024 / 1024).toFixed(1)}G`;
}
