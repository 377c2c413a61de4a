// kshark's dashboard: the live traffic table with its filter and detail, the service
// map, golden signals and every counter, all from the hub that serves this page.

import { render } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import "./style.css";
import { checkFilter, getJson, login, Unauthorized, url, wsUrl, type FilterCheck } from "./api";
import { and } from "./filter";
import { Detail } from "./detail";
import { selectionFilter, ServiceMapView, type Selection } from "./map";
import type { Row } from "./row";
import { SignalsView } from "./signals";
import { notCaptured, StatsView, tlsStatus, totalDrops, useStats, type PageCounters } from "./stats";
import type { FromWorker, ToWorker } from "./stream.worker";
import { Table } from "./table";

/** Rows the page keeps (the hub keeps them all: export or filter for the rest). */
export const CAP = 10_000;
/** Stored entries shown first when the stream (re)starts. */
const LAST = 1000;

type Tab = "traffic" | "map" | "signals" | "stats";
const TABS: [Tab, string][] = [
  ["traffic", "Traffic"],
  ["map", "Service map"],
  ["signals", "Golden signals"],
  ["stats", "Stats"],
];

const initialFilter = () => new URLSearchParams(location.search).get("q") ?? "";
const initialTab = (): Tab => {
  const h = location.hash.slice(1);
  return (TABS.find(([t]) => t === h)?.[0] ?? "traffic") as Tab;
};

function FilterBar({ applied, onApply }: { applied: string; onApply: (f: string) => Promise<FilterCheck> }) {
  const [draft, setDraft] = useState(applied);
  const [check, setCheck] = useState<FilterCheck>({ ok: true });
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => setDraft(applied), [applied]);
  // checked by the hub as it is typed
  useEffect(() => {
    let live = true;
    const t = setTimeout(async () => {
      try {
        const c = await checkFilter(draft);
        if (live) setCheck(c);
      } catch {
        /* the hub is away: the stream's state says so */
      }
    }, 250);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [draft]);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "/" && document.activeElement?.tagName !== "INPUT") {
        e.preventDefault();
        input.current?.focus();
      }
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, []);
  const apply = async () => setCheck(await onApply(draft));
  const bad = !check.ok ? check : null;
  return (
    <div class="filterbar">
      <div class="filterline">
        <input
          ref={input}
          class={bad ? "bad" : draft !== applied ? "changed" : ""}
          value={draft}
          spellcheck={false}
          placeholder='filter, e.g. http && status_code >= 500 && dst.namespace == "sock-shop"   (press / to focus)'
          onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") apply();
            if (e.key === "Escape") setDraft(applied);
          }}
          data-testid="filter"
          aria-invalid={bad ? "true" : "false"}
        />
        <button onClick={apply} data-testid="apply">
          apply
        </button>
      </div>
      {bad && (
        <div class="filtererror" data-testid="filter-error">
          {bad.position !== null && (
            <pre class="caret">
              {draft.slice(0, bad.position)}
              <mark>{draft.slice(bad.position, bad.position + 1) || " "}</mark>
              {draft.slice(bad.position + 1)}
            </pre>
          )}
          <span>
            {bad.position !== null ? `position ${bad.position}: ` : ""}
            {bad.error}
          </span>
        </div>
      )}
    </div>
  );
}

function TokenPrompt({ onDone }: { onDone: () => void }) {
  const [t, setT] = useState("");
  const [wrong, setWrong] = useState(false);
  return (
    <div class="modal">
      <form
        data-testid="token-form"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            if (await login(t.trim())) onDone();
            else setWrong(true);
          } catch {
            setWrong(true);
          }
        }}
      >
        <p>This hub listens beyond loopback: readers need its reader token (the first line of its reader-token file).</p>
        <input type="password" value={t} onInput={(e) => setT((e.target as HTMLInputElement).value)} autofocus data-testid="token" />
        {wrong && <p class="error">the hub refused that token</p>}
        <button type="submit">use it</button>
      </form>
    </div>
  );
}

function App() {
  const [tab, setTab] = useState<Tab>(initialTab);
  const [applied, setApplied] = useState(initialFilter);
  const rows = useRef<Row[]>([]);
  const held = useRef<Row[]>([]);
  const [version, setVersion] = useState(0);
  const [paused, setPaused] = useState(false);
  const pausedRef = useRef(false);
  const [follow, setFollow] = useState(true);
  const [showNs, setShowNs] = useState(false);
  const [sortLatency, setSortLatency] = useState(false);
  const [selected, setSelected] = useState<Row | null>(null);
  const [conn, setConn] = useState<{ state: string; detail: string }>({ state: "connecting", detail: "" });
  const [needToken, setNeedToken] = useState(false);
  const [mapWindow, setMapWindow] = useState("5m");
  const [signalsOf, setSignalsOf] = useState<Selection>({ kind: "all" });
  const counters = useRef<PageCounters>({ received: 0, kept: 0, evicted: 0, skippedPaused: 0, bad: 0 });
  const arrivals = useRef<[number, number][]>([]);
  const [rate, setRate] = useState(0);
  const [stats, statsErr] = useStats(2000);
  const worker = useRef<Worker | null>(null);

  useEffect(() => {
    getJson("/api/stats").catch((e) => e instanceof Unauthorized && setNeedToken(true));
  }, []);

  useEffect(() => {
    const onHash = () => setTab(initialTab());
    const onPop = () => setApplied(initialFilter());
    addEventListener("hashchange", onHash);
    addEventListener("popstate", onPop);
    return () => {
      removeEventListener("hashchange", onHash);
      removeEventListener("popstate", onPop);
    };
  }, []);

  useEffect(() => {
    const w = new Worker(new URL("./stream.worker.ts", import.meta.url), { type: "module" });
    worker.current = w;
    w.onmessage = (ev: MessageEvent<FromWorker>) => {
      const m = ev.data;
      if (m.type === "state") {
        setConn({ state: m.state, detail: m.detail });
        return;
      }
      const c = counters.current;
      c.received += m.rows.length;
      c.bad += m.bad;
      const now = performance.now();
      arrivals.current.push([now, m.rows.length]);
      while (arrivals.current.length && arrivals.current[0][0] < now - 5000) arrivals.current.shift();
      if (pausedRef.current) {
        // held while paused, up to the cap; what comes beyond is counted
        held.current.push(...m.rows);
        if (held.current.length > CAP) {
          c.skippedPaused += held.current.length - CAP;
          held.current.splice(0, held.current.length - CAP);
        }
        return;
      }
      append(m.rows);
    };
    const t = setInterval(() => {
      const now = performance.now();
      const n = arrivals.current.filter(([t]) => t >= now - 5000).reduce((a, [, k]) => a + k, 0);
      setRate(n / 5);
    }, 1000);
    return () => {
      clearInterval(t);
      w.terminate();
    };
  }, []);

  const append = (list: Row[]) => {
    const r = rows.current;
    for (const x of list) r.push(x);
    if (r.length > CAP) {
      counters.current.evicted += r.length - CAP;
      r.splice(0, r.length - CAP);
    }
    counters.current.kept = r.length;
    setVersion((v) => v + 1);
  };

  // (re)start the stream when the filter changes
  useEffect(() => {
    rows.current = [];
    held.current = [];
    counters.current.kept = 0;
    setSelected(null);
    setVersion((v) => v + 1);
    const m: ToWorker = { type: "start", url: wsUrl("/api/stream", { filter: applied, last: LAST }) };
    worker.current?.postMessage(m);
  }, [applied, needToken]);

  const applyFilter = useCallback(async (f: string): Promise<FilterCheck> => {
    const c = await checkFilter(f).catch((e) => ({ ok: false, error: String((e as Error).message), position: null }) as FilterCheck);
    if (!c.ok) return c;
    const u = new URL(location.href);
    if (f.trim() === "") u.searchParams.delete("q");
    else u.searchParams.set("q", f);
    if (u.toString() !== location.href) history.pushState(null, "", u);
    setApplied(f);
    return c;
  }, []);

  const addClause = (clause: string) => {
    applyFilter(and(applied, clause));
  };

  const togglePause = () => {
    const p = !pausedRef.current;
    pausedRef.current = p;
    setPaused(p);
    if (!p && held.current.length) {
      const h = held.current;
      held.current = [];
      append(h);
    }
  };

  const goTab = (t: Tab) => {
    setTab(t);
    history.replaceState(null, "", `${location.pathname}${location.search}#${t}`);
  };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (document.activeElement?.tagName === "INPUT") return;
      if (e.key === "Escape") setSelected(null);
      if (e.key === " " && tab === "traffic") {
        e.preventDefault();
        togglePause();
      }
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, [tab]);

  const shown = useMemo(() => {
    if (!sortLatency) return rows.current;
    return [...rows.current].sort((a, b) => (b.latency ?? -1) - (a.latency ?? -1));
  }, [version, sortLatency]);

  const drops = totalDrops(stats);
  const missing = notCaptured(stats);
  const tls = tlsStatus(stats);
  const exportUrl = (format: string) => url("/api/entries", { filter: applied, limit: 1_000_000, format, download: 1 });

  if (needToken) return <TokenPrompt onDone={() => setNeedToken(false)} />;

  return (
    <div class="app">
      <header class="top">
        <span class="logo">kshark</span>
        <FilterBar applied={applied} onApply={applyFilter} />
        <div class="status">
          <span class={`conn ${conn.state}`} title={conn.detail} data-testid="conn">
            {conn.state === "open" ? "live" : conn.state}
          </span>
          <span data-testid="rate">{rate < 10 ? rate.toFixed(1) : Math.round(rate)}/s</span>
          <span class={drops > 0 ? "drops bad" : "drops"} title="drops at every stage (Stats tab)" data-testid="drops">
            drops {drops}
          </span>
          {missing.length > 0 && (
            <span class="drops bad" title={missing.join("\n")} data-testid="not-captured">
              not captured {missing.length}
            </span>
          )}
          {tls.hooked.length > 0 && (
            <span class="drops" title={tls.hooked.map((p) => `${p.pod} ${p.process}: ${p.stack}`).join("\n")} data-testid="tls-read">
              TLS {tls.hooked.length}
            </span>
          )}
          {tls.blind.length > 0 && (
            <span class="drops bad" title={tls.blind.map((p) => `${p.pod} ${p.process}: ${p.stack}: ${p.why}`).join("\n")} data-testid="tls-blind">
              TLS not readable {tls.blind.length}
            </span>
          )}
        </div>
      </header>
      <nav class="tabs main">
        {TABS.map(([t, label]) => (
          <button key={t} class={tab === t ? "on" : ""} onClick={() => goTab(t)} data-testid={`tab-${t}`}>
            {label}
          </button>
        ))}
        <span class="grow" />
        {tab === "traffic" && (
          <>
            <button class={paused ? "on" : ""} onClick={togglePause} data-testid="pause" title="space">
              {paused ? `resume (${held.current.length} held)` : "pause"}
            </button>
            <button class={follow ? "on" : ""} onClick={() => setFollow(!follow)} disabled={sortLatency}>
              follow
            </button>
            <button class={sortLatency ? "on" : ""} onClick={() => setSortLatency(!sortLatency)}>
              sort by latency
            </button>
            <button class={showNs ? "on" : ""} onClick={() => setShowNs(!showNs)}>
              namespaces
            </button>
          </>
        )}
        <a class="button" href={exportUrl("ndjson")} download data-testid="export-ndjson">
          export NDJSON
        </a>
        <a class="button" href={exportUrl("har")} download data-testid="export-har">
          export HAR
        </a>
      </nav>
      <main>
        {tab === "traffic" && (
          <div class="traffic">
            <Table rows={shown} version={version} selected={selected?.seq ?? null} follow={follow && !sortLatency && !paused} showNs={showNs} onSelect={setSelected} onFollow={setFollow} />
            {selected && <Detail key={selected.seq} row={selected} onAdd={addClause} onClose={() => setSelected(null)} />}
          </div>
        )}
        {tab === "map" && (
          <ServiceMapView
            span={mapWindow}
            onSpan={setMapWindow}
            onPick={(s, to) => {
              if (to === "signals") {
                setSignalsOf(s);
                goTab("signals");
              } else {
                applyFilter(selectionFilter(s));
                goTab("traffic");
              }
            }}
          />
        )}
        {tab === "signals" && <SignalsView selection={signalsOf} onSelect={setSignalsOf} />}
        {tab === "stats" && <StatsView stats={stats} err={statsErr} page={counters.current} />}
      </main>
      <footer class="foot" data-testid="footer">
        {rows.current.length.toLocaleString("en")} {rows.current.length === 1 ? "entry" : "entries"} on this page (it keeps the newest {CAP.toLocaleString("en")}; the hub keeps them all)
        {applied ? ` · filter: ${applied}` : ""}
      </footer>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
