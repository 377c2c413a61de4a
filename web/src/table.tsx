// The live table: fixed-height rows, only those in view are in the DOM, so it costs the
// same with 10 rows or the page's full cap. Follows the newest unless scrolled away.

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { latency, size, type Row } from "./row";

export const ROW_H = 24;
const OVERSCAN = 8;

interface Props {
  rows: Row[];
  version: number;
  selected: number | null;
  follow: boolean;
  showNs: boolean;
  onSelect: (r: Row) => void;
  onFollow: (f: boolean) => void;
}

export function Table({ rows, version, selected, follow, showNs, onSelect, onFollow }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // following: the newest row in view after each batch
  useLayoutEffect(() => {
    const el = box.current;
    if (el && follow) {
      el.scrollTop = el.scrollHeight;
      setTop(el.scrollTop);
    }
  }, [version, follow, rows.length]);

  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    setTop(el.scrollTop);
    const atEnd = el.scrollTop + el.clientHeight >= el.scrollHeight - ROW_H;
    if (follow && !atEnd) onFollow(false);
    else if (!follow && atEnd && el.scrollTop > 0) onFollow(true);
  };

  const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
  const shown = rows.slice(first, last);
  const who = (name: string, ns: string) => (showNs && ns ? `${ns}/${name}` : name);

  return (
    <div class="table" role="table" aria-label="entries">
      <div class="thead" role="row">
        <span class="c-time">time</span>
        <span class="c-proto">proto</span>
        <span class="c-method">method</span>
        <span class="c-what">path / name</span>
        <span class="c-status">status</span>
        <span class="c-src">source</span>
        <span class="c-dst">destination</span>
        <span class="c-lat">latency</span>
        <span class="c-size">size</span>
      </div>
      <div class="tbody" ref={box} onScroll={onScroll} data-testid="rows">
        <div style={{ height: `${rows.length * ROW_H}px`, position: "relative" }}>
          {shown.map((r, i) => (
            <div
              key={r.seq}
              role="row"
              class={`tr ${r.seq === selected ? "sel" : ""} ${r.anomalies ? "anom" : ""}`}
              style={{ top: `${(first + i) * ROW_H}px` }}
              onClick={() => onSelect(r)}
              data-id={r.id}
            >
              <span class="c-time">{r.time}</span>
              <span class={`c-proto p-${r.protocol}`}>{r.protocol}</span>
              <span class="c-method">{r.method}</span>
              <span class="c-what" title={r.what}>
                {r.what}
              </span>
              <span class={`c-status s-${r.cls}`}>{r.status}</span>
              <span class="c-src" title={r.srcNs ? `${r.srcNs}/${r.src}` : r.src}>
                {who(r.src, r.srcNs)}
              </span>
              <span class="c-dst" title={r.dstNs ? `${r.dstNs}/${r.dst}` : r.dst}>
                {who(r.dst, r.dstNs)}
              </span>
              <span class="c-lat">{latency(r.latency)}</span>
              <span class="c-size">{size(r.size)}</span>
            </div>
          ))}
        </div>
      </div>
    </div>
  );
}
