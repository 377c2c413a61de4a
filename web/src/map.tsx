// The service map: workloads grouped by namespace, the edges between them with request
// rate, error ratio and latency (from /api/servicemap), laid out by cytoscape's fCoSE.
// The graph is laid out again only when its workloads or edges change, so refreshing the
// figures does not move anything under the user's pointer.

import { useEffect, useRef, useState } from "preact/hooks";
import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
import { getJson, type MapEdge, type MapNode, type ServiceMap } from "./api";
import { usePoll } from "./poll";
import { eq } from "./filter";

cytoscape.use(fcose);

export type Selection = { kind: "all" } | { kind: "node"; node: MapNode } | { kind: "edge"; edge: MapEdge; from?: MapNode; to?: MapNode };

/** The filter that keeps one end being this workload (as the hub's metrics name it). */
export function endClause(side: "src" | "dst", n: MapNode): string {
  const ns = n.namespace ? ` && ${eq(`${side}.namespace`, n.namespace)}` : "";
  switch (n.kind) {
    case "Service":
      return `${eq(`${side}.service.name`, n.name)}${ns}`;
    case "Pod":
      return `${eq(`${side}.pod.name`, n.name)}${ns}`;
    case "External":
      return eq(`${side}.name`, n.name);
    default:
      return `${eq(`${side}.pod.workload.name`, n.name)}${ns}`;
  }
}

/** The filter for a picked workload (either end) or edge. */
export function selectionFilter(s: Selection): string {
  if (s.kind === "node") return `((${endClause("src", s.node)}) || (${endClause("dst", s.node)}))`;
  if (s.kind === "edge" && s.from && s.to) return `(${endClause("src", s.from)} && ${endClause("dst", s.to)})`;
  return "";
}

export const WINDOWS = ["1m", "5m", "15m", "1h"];

const ms = (v: number | null) => (v === null ? "-" : v < 10 ? `${v.toFixed(1)}ms` : `${Math.round(v)}ms`);

export function edgeLabel(e: MapEdge): string {
  return `${e.rate < 10 ? e.rate.toFixed(2) : Math.round(e.rate)}/s · ${(e.error_ratio * 100).toFixed(e.error_ratio > 0 && e.error_ratio < 0.01 ? 1 : 0)}% err · p95 ${ms(e.p95_ms)}`;
}

const edgeColour = (e: MapEdge) => (e.error_ratio >= 0.05 ? "#e5484d" : e.error_ratio > 0 ? "#f5a524" : "#6e7b8b");

export function ServiceMapView({ span, onSpan, onPick }: { span: string; onSpan: (w: string) => void; onPick: (s: Selection, to: "traffic" | "signals") => void }) {
  const box = useRef<HTMLDivElement>(null);
  const cy = useRef<cytoscape.Core | null>(null);
  const shape = useRef("");
  const [map, err] = usePoll(() => getJson<ServiceMap>("/api/servicemap", { window: span }), 5000, [span]);
  const [picked, setPicked] = useState<Selection>({ kind: "all" });
  const nodes = useRef(new Map<string, MapNode>());
  const edgePick = (e: MapEdge): Selection => ({ kind: "edge", edge: e, from: nodes.current.get(e.source), to: nodes.current.get(e.destination) });

  useEffect(() => {
    if (!box.current) return;
    const c = cytoscape({
      container: box.current,
      minZoom: 0.2,
      maxZoom: 1.6,
      style: [
        { selector: "node", style: { label: "data(label)", "font-size": 12, "min-zoomed-font-size": 6, color: "#d8dee9", "text-valign": "bottom", "text-margin-y": 4, "background-color": "#5e81ac", width: 26, height: 26 } },
        { selector: "node[kind = 'External']", style: { "background-color": "#8f96a3", shape: "diamond" } },
        { selector: "node[kind = 'Service']", style: { shape: "round-rectangle" } },
        { selector: ":parent", style: { "background-color": "#1f2530", "background-opacity": 0.6, "border-color": "#3b4252", "border-width": 1, label: "data(label)", "text-valign": "top", "text-halign": "center", color: "#88c0d0", "font-size": 12, shape: "round-rectangle", padding: "18px" } },
        { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", width: "data(width)", "line-color": "data(colour)", "target-arrow-color": "data(colour)", label: "data(label)", "font-size": 10, "min-zoomed-font-size": 7, color: "#c0c8d4", "text-background-color": "#12161d", "text-background-opacity": 0.85, "text-background-padding": "2px", "text-rotation": "autorotate", "text-opacity": 0 } },
        // with many edges their figures would cover each other: shown for a few, or on hover and selection (the table has them all)
        { selector: "edge.labelled, edge.hover, edge:selected", style: { "text-opacity": 1 } },
        { selector: ":selected", style: { "border-width": 3, "border-color": "#ebcb8b", "line-color": "#ebcb8b", "target-arrow-color": "#ebcb8b" } },
      ],
    });
    c.on("tap", "node", (ev) => {
      const n = ev.target.data("node") as MapNode | undefined;
      if (n) setPicked({ kind: "node", node: n });
    });
    c.on("tap", "edge", (ev) => setPicked(edgePick(ev.target.data("edge") as MapEdge)));
    c.on("mouseover", "edge", (ev) => ev.target.addClass("hover"));
    c.on("mouseout", "edge", (ev) => ev.target.removeClass("hover"));
    c.on("tap", (ev) => {
      if (ev.target === c) setPicked({ kind: "all" });
    });
    cy.current = c;
    // the box takes its size from the page: fit the graph again when it changes
    const ro = new ResizeObserver(() => {
      c.resize();
      c.fit(undefined, 30);
    });
    ro.observe(box.current);
    return () => {
      ro.disconnect();
      c.destroy();
      cy.current = null;
    };
  }, []);

  useEffect(() => {
    const c = cy.current;
    if (!c || !map) return;
    nodes.current = new Map(map.nodes.map((n) => [n.id, n]));
    const labelled = map.edges.length <= 10;
    const namespaces = [...new Set(map.nodes.map((n) => n.namespace).filter((n) => n !== ""))];
    const maxRate = Math.max(1, ...map.edges.map((e) => e.rate));
    const els: cytoscape.ElementDefinition[] = [
      ...namespaces.map((ns) => ({ data: { id: `ns:${ns}`, label: ns } })),
      ...map.nodes.map((n) => ({ data: { id: `w:${n.id}`, label: n.name, kind: n.kind, node: n, parent: n.namespace ? `ns:${n.namespace}` : undefined } })),
      ...map.edges.map((e) => ({
        data: {
          id: `e:${e.source}->${e.destination}`,
          source: `w:${e.source}`,
          target: `w:${e.destination}`,
          label: edgeLabel(e),
          colour: edgeColour(e),
          width: 1.5 + 4 * (Math.log1p(e.rate) / Math.log1p(maxRate)),
          edge: e,
        },
        classes: labelled ? "labelled" : "",
      })),
    ];
    const now = els.map((e) => e.data.id).sort().join("|");
    if (now !== shape.current) {
      shape.current = now;
      c.elements().remove();
      c.add(els);
      if (els.length > 0) {
        c.layout({ name: "fcose", animate: false, randomize: true, quality: "proof", nodeSeparation: 120, nodeRepulsion: () => 9000, idealEdgeLength: () => 150, gravity: 0.2, nestingFactor: 0.15, padding: 30 } as cytoscape.LayoutOptions).run();
        // the box is wider than tall: turn a tall layout on its side
        const bb = c.elements().boundingBox();
        if (bb.h > bb.w) {
          c.nodes()
            .filter((n) => !n.isParent())
            .positions((n) => ({ x: n.position("y"), y: n.position("x") }));
        }
        c.fit(undefined, 30);
      }
    } else {
      for (const e of els) {
        const el = c.getElementById(e.data.id as string);
        el.data(e.data);
        if (el.isEdge()) el.toggleClass("labelled", labelled);
      }
    }
  }, [map]);

  const pickedText =
    picked.kind === "node" ? `${picked.node.id} (${picked.node.kind})` : picked.kind === "edge" ? `${picked.edge.source} → ${picked.edge.destination}: ${edgeLabel(picked.edge)}, p50 ${ms(picked.edge.p50_ms)}, p99 ${ms(picked.edge.p99_ms)}` : "click a workload or an edge";
  return (
    <div class="mapview">
      <div class="toolbar">
        <label>
          window{" "}
          <select value={span} onChange={(e) => onSpan((e.target as HTMLSelectElement).value)} data-testid="map-window">
            {WINDOWS.map((w) => (
              <option key={w}>{w}</option>
            ))}
          </select>
        </label>
        <span class="muted" data-testid="map-summary">
          {map ? `${map.nodes.length} workloads, ${map.edges.length} edges` : "loading"}
        </span>
        {err && <span class="error">{err}</span>}
        <span class="grow" />
        <span class="picked" data-testid="map-picked">
          {pickedText}
        </span>
        {picked.kind !== "all" && (
          <>
            <button onClick={() => onPick(picked, "traffic")} data-testid="pick-traffic">
              filter traffic
            </button>
            <button onClick={() => onPick(picked, "signals")} data-testid="pick-signals">
              golden signals
            </button>
          </>
        )}
      </div>
      <div class="graph" ref={box} data-testid="graph" />
      {map && map.edges.length === 0 && <div class="empty">no requests in the last {span}</div>}
      {map && (
        <table class="grid edges" data-testid="edges">
          <thead>
            <tr>
              <th>source</th>
              <th>destination</th>
              <th>protocols</th>
              <th>rate</th>
              <th>errors</th>
              <th>p50</th>
              <th>p95</th>
              <th>p99</th>
            </tr>
          </thead>
          <tbody>
            {map.edges.map((e) => (
              <tr key={`${e.source}->${e.destination}`} onClick={() => setPicked(edgePick(e))}>
                <td>{e.source}</td>
                <td>{e.destination}</td>
                <td>{e.protocols.join(", ")}</td>
                <td>{e.rate.toFixed(2)}/s</td>
                <td class={e.error_ratio > 0 ? "bad" : ""}>{(e.error_ratio * 100).toFixed(1)}%</td>
                <td>{ms(e.p50_ms)}</td>
                <td>{ms(e.p95_ms)}</td>
                <td>{ms(e.p99_ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
