// The live stream, off the page's main thread: one WebSocket to /api/stream, each entry
// parsed and turned into a row here, rows handed to the page in batches every 100 ms so
// that thousands of entries a second cost the page one update per batch.

import { toRow, type Row } from "./row";

export type ToWorker = { type: "start"; url: string } | { type: "stop" };
export type FromWorker =
  | { type: "rows"; rows: Row[]; bad: number }
  | { type: "state"; state: "connecting" | "open" | "closed"; detail: string };

let ws: WebSocket | null = null;
let url = "";
let pending: Row[] = [];
let seq = 0;
let bad = 0;
let retry: ReturnType<typeof setTimeout> | null = null;
let backoff = 500;

const post = (m: FromWorker) => (self as unknown as Worker).postMessage(m);

function connect(first: boolean) {
  retry = null;
  post({ type: "state", state: "connecting", detail: "" });
  // after a reconnect only new entries: the stored ones asked for at first are shown
  const u = new URL(url);
  if (!first) u.searchParams.delete("last");
  const sock = new WebSocket(u.toString());
  ws = sock;
  sock.onopen = () => {
    backoff = 500;
    post({ type: "state", state: "open", detail: "" });
  };
  sock.onmessage = (ev) => {
    if (typeof ev.data !== "string") return;
    let e: unknown;
    try {
      e = JSON.parse(ev.data);
    } catch {
      bad++;
      return;
    }
    const r = toRow(e, ev.data, ++seq);
    if (r) pending.push(r);
    else bad++;
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    const why = ev.reason || (ev.code === 1006 ? "the hub went away" : `closed (${ev.code})`);
    post({ type: "state", state: "closed", detail: `${why}; reconnecting` });
    retry = setTimeout(() => connect(false), backoff);
    backoff = Math.min(backoff * 2, 5000);
  };
}

function flush() {
  if (pending.length === 0 && bad === 0) return;
  post({ type: "rows", rows: pending, bad });
  pending = [];
  bad = 0;
}

setInterval(flush, 100);

self.onmessage = (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (retry) clearTimeout(retry);
  retry = null;
  if (ws) {
    const old = ws;
    ws = null;
    old.close();
  }
  pending = [];
  if (m.type === "start") {
    url = m.url;
    backoff = 500;
    connect(true);
  }
};
