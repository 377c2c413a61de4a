// Golden signals over time (uPlot): request rate, error ratio and p50/p95/p99 latency,
// for all traffic, the requests a workload served, or one edge (/api/signals, 10 s steps).

import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { getJson, type ServiceMap, type Signals } from "./api";
import { usePoll } from "./poll";
import { WINDOWS, type Selection } from "./map";

const AXIS = { stroke: "#aab4c3", grid: { stroke: "#2a303b" }, ticks: { stroke: "#2a303b" } };

function Chart({ title, data, series, testid }: { title: string; data: uPlot.AlignedData; series: uPlot.Series[]; testid: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(300, el.clientWidth),
      height: 180,
      title,
      scales: { x: { time: true } },
      series: [{}, ...series],
      axes: [AXIS, AXIS],
      legend: { live: false },
    };
    const p = new uPlot(opts, data, el);
    plot.current = p;
    const ro = new ResizeObserver(() => p.setSize({ width: Math.max(300, el.clientWidth), height: 180 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      p.destroy();
      plot.current = null;
    };
    // the chart is made once per set of series; data updates go through setData below
  }, [title, series.length]);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  return <div class="chart" ref={box} data-testid={testid} />;
}

const RATE: uPlot.Series[] = [{ label: "requests/s", stroke: "#88c0d0", fill: "rgba(136,192,208,0.15)", width: 2 }];
const ERR: uPlot.Series[] = [{ label: "error %", stroke: "#e5484d", fill: "rgba(229,72,77,0.15)", width: 2 }];
const LAT: uPlot.Series[] = [
  { label: "p50 ms", stroke: "#a3be8c", width: 2 },
  { label: "p95 ms", stroke: "#ebcb8b", width: 2 },
  { label: "p99 ms", stroke: "#d08770", width: 2 },
];

export function selectionParams(s: Selection): { source?: string; destination?: string } {
  if (s.kind === "node") return { destination: s.node.id };
  if (s.kind === "edge") return { source: s.edge.source, destination: s.edge.destination };
  return {};
}

function key(s: Selection): string {
  return s.kind === "node" ? `n:${s.node.id}` : s.kind === "edge" ? `e:${s.edge.source}->${s.edge.destination}` : "all";
}

export function SignalsView({ selection, onSelect }: { selection: Selection; onSelect: (s: Selection) => void }) {
  const [span, setSpan] = useState("5m");
  const [both, err] = usePoll(
    () => Promise.all([getJson<Signals>("/api/signals", { window: span, ...selectionParams(selection) }), getJson<ServiceMap>("/api/servicemap", { window: "1h" })]),
    5000,
    [span, key(selection)],
  );
  const sig = both?.[0] ?? null;
  const choices = { nodes: both?.[1].nodes ?? [], edges: both?.[1].edges ?? [] };

  const pts = sig?.points ?? [];
  const x = pts.map((p) => p.t);
  const nul = (v: number | null) => (v === null ? null : v);
  const rate: uPlot.AlignedData = [x, pts.map((p) => p.rate)];
  const err_: uPlot.AlignedData = [x, pts.map((p) => (p.error_ratio === null ? null : p.error_ratio * 100))];
  const lat: uPlot.AlignedData = [x, pts.map((p) => nul(p.p50_ms)), pts.map((p) => nul(p.p95_ms)), pts.map((p) => nul(p.p99_ms))];
  const total = pts.reduce((a, p) => a + p.requests, 0);
  const errors = pts.reduce((a, p) => a + p.errors, 0);

  const options: [string, Selection][] = [
    ["all traffic", { kind: "all" }],
    ...choices.nodes.map((n): [string, Selection] => [`served by ${n.id}`, { kind: "node", node: n }]),
    ...choices.edges.map((e): [string, Selection] => [`${e.source} → ${e.destination}`, { kind: "edge", edge: e }]),
  ];
  if (!options.some(([, s]) => key(s) === key(selection))) options.push([selection.kind === "node" ? `served by ${selection.node.id}` : selection.kind === "edge" ? `${selection.edge.source} → ${selection.edge.destination}` : "all traffic", selection]);

  return (
    <div class="signals">
      <div class="toolbar">
        <select value={key(selection)} onChange={(e) => onSelect(options.find(([, s]) => key(s) === (e.target as HTMLSelectElement).value)?.[1] ?? { kind: "all" })} data-testid="signals-of">
          {options.map(([label, s]) => (
            <option key={key(s)} value={key(s)}>
              {label}
            </option>
          ))}
        </select>
        <label>
          window{" "}
          <select value={span} onChange={(e) => setSpan((e.target as HTMLSelectElement).value)}>
            {WINDOWS.map((w) => (
              <option key={w}>{w}</option>
            ))}
          </select>
        </label>
        <span class="muted" data-testid="signals-summary">
          {total} requests, {errors} errors in the last {span} ({sig?.step_seconds ?? 10} s steps)
        </span>
        {err && <span class="error">{err}</span>}
      </div>
      <Chart title="request rate" data={rate} series={RATE} testid="chart-rate" />
      <Chart title="error ratio" data={err_} series={ERR} testid="chart-errors" />
      <Chart title="latency" data={lat} series={LAT} testid="chart-latency" />
    </div>
  );
}
