// Every counter the hub reports (/api/stats): the totals, drops at every stage (red when
// not zero), the hub's own, each worker's; and this page's own.

import { getJson } from "./api";
import { usePoll } from "./poll";

type J = Record<string, unknown>;
const DROPPY = /drop|cut|malformed|refused|error|gap|lost|overflow|bad/;

export interface PageCounters {
  received: number;
  kept: number;
  evicted: number;
  skippedPaused: number;
  bad: number;
}

/** A counter as text: times (ns since the epoch) as times, numbers grouped. */
function show(k: string, v: unknown): string {
  if (typeof v !== "number") return String(v);
  if (/last_seen|_at$/.test(k) && v > 1e15) return new Date(v / 1e6).toISOString().replace("T", " ").slice(0, 23);
  return v.toLocaleString("en");
}

function Counters({ title, o, testid }: { title: string; o: J; testid?: string }) {
  const flat: [string, unknown][] = [];
  const walk = (prefix: string, v: unknown) => {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) for (const [k, x] of Object.entries(v as J)) walk(prefix ? `${prefix}.${k}` : k, x);
    // lists (the TLS processes) are shown in their own tables: here, how many
    else if (Array.isArray(v)) flat.push([prefix, v.length]);
    else flat.push([prefix, v]);
  };
  walk("", o);
  return (
    <section class="counters" data-testid={testid}>
      <h4>{title}</h4>
      <table class="kv">
        <tbody>
          {flat.map(([k, v]) => {
            const bad = DROPPY.test(k) && typeof v === "number" && v > 0;
            return (
              <tr key={k} class={bad ? "bad" : ""}>
                <th>{k}</th>
                <td>{show(k, v)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

export function useStats(every: number): [J | null, string | null] {
  return usePoll(() => getJson<J>("/api/stats"), every, [every]);
}

export function totalDrops(s: J | null): number {
  const d = s?.drops;
  if (!d || typeof d !== "object") return 0;
  return Object.values(d as J).reduce<number>((a, v) => a + (typeof v === "number" ? v : 0), 0);
}

/** What the hub says is not captured, and why: pods a worker could not attach to, nodes
 * without a worker. One line each. */
export function notCaptured(s: J | null): string[] {
  const nc = (s?.not_captured ?? {}) as J;
  const text = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v ?? ""));
  const pods = Array.isArray(nc.pods) ? nc.pods : [];
  const nodes = Array.isArray(nc.nodes) ? nc.nodes : [];
  return [
    ...nodes.map((n) => `node ${text(n)}: no worker connected`),
    ...pods.map((p) => {
      const o = (p ?? {}) as J;
      return `pod ${text(o.pod)} on ${text(o.node)}: ${text(o.reason)}`;
    }),
  ];
}

/** One process of a worker's TLS report. */
export interface TlsProcess {
  worker: string;
  pid: number;
  process: string;
  pod: string;
  stack: string;
  why?: string;
  lost: number;
}

/** Every worker's TLS report: the processes read as plaintext, and those whose TLS
 * cannot be read, with why. */
export function tlsStatus(s: J | null): { hooked: TlsProcess[]; blind: TlsProcess[] } {
  const hooked: TlsProcess[] = [];
  const blind: TlsProcess[] = [];
  const text = (v: unknown) => (typeof v === "string" ? v : v == null ? "" : String(v));
  for (const [worker, w] of Object.entries((s?.workers ?? {}) as J)) {
    const tls = (((w ?? {}) as J).stats as J | undefined)?.tls as J | undefined;
    if (!tls) continue;
    for (const p of Array.isArray(tls.hooked) ? (tls.hooked as J[]) : []) {
      const lost = ["ring_full", "missed_entries", "no_fd", "no_socket"].reduce((a, k) => a + (typeof p[k] === "number" ? (p[k] as number) : 0), 0);
      hooked.push({ worker, pid: Number(p.pid), process: text(p.process), pod: text(p.pod) || "(host)", stack: `${text(p.library)} ${text(p.version)}`.trim(), lost });
    }
    for (const p of Array.isArray(tls.not_readable) ? (tls.not_readable as J[]) : []) {
      blind.push({ worker, pid: Number(p.pid), process: text(p.process), pod: text(p.pod) || "(host)", stack: text(p.tls), why: text(p.why), lost: 0 });
    }
  }
  return { hooked, blind };
}

function TlsTable({ title, rows, testid, bad }: { title: string; rows: TlsProcess[]; testid: string; bad?: boolean }) {
  return (
    <section class="counters" data-testid={testid}>
      <h4>{title}</h4>
      <table class="kv">
        <thead>
          <tr>
            <th>pod</th>
            <th>process</th>
            <th>{bad ? "TLS" : "library"}</th>
            <th>{bad ? "why" : "lost calls"}</th>
            <th>worker</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={`${r.worker}/${r.pid}/${r.stack}`} class={bad || r.lost > 0 ? "bad" : ""}>
              <td>{r.pod}</td>
              <td>
                {r.process} ({r.pid})
              </td>
              <td>{r.stack}</td>
              <td>{bad ? r.why : r.lost.toLocaleString("en")}</td>
              <td>{r.worker}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function StatsView({ stats, err, page }: { stats: J | null; err: string | null; page: PageCounters }) {
  const workers = (stats?.workers ?? {}) as J;
  const missing = notCaptured(stats);
  const tls = tlsStatus(stats);
  return (
    <div class="stats">
      {err && <p class="error">{err}</p>}
      {missing.length > 0 && (
        <section data-testid="not-captured-list">
          <h4>not captured</h4>
          <ul>
            {missing.map((m) => (
              <li key={m} class="bad">
                {m}
              </li>
            ))}
          </ul>
        </section>
      )}
      {tls.blind.length > 0 && <TlsTable title="TLS not readable" rows={tls.blind} testid="tls-not-readable" bad />}
      {tls.hooked.length > 0 && <TlsTable title="TLS read as plaintext" rows={tls.hooked} testid="tls-hooked" />}
      {stats && <Counters title="totals" o={{ packets: stats.packets, bytes: stats.bytes, entries: stats.entries }} />}
      {stats && <Counters title="drops" o={(stats.drops ?? {}) as J} testid="stats-drops" />}
      {stats && <Counters title="hub" o={(stats.hub ?? {}) as J} />}
      {Object.entries(workers).map(([name, w]) => (
        <Counters key={name} title={`worker ${name}`} o={w as J} />
      ))}
      <Counters
        title="this page"
        o={{ received: page.received, kept: page.kept, page_evicted: page.evicted, skipped_while_paused: page.skippedPaused, bad_messages: page.bad }}
        testid="page"
      />
    </div>
  );
}
