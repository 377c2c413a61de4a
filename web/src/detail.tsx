// The detail panel: one entry's request, response and the rest (timing, both ends,
// anomalies), every value shown as text (never as markup or a link), with a "+" beside
// each that adds it to the filter, and "copy as curl".

import { useState } from "preact/hooks";
import type { ComponentChildren } from "preact";
import { at, latency, num, size, str, type Row } from "./row";
import { eq, lit } from "./filter";

type J = Record<string, unknown>;
const obj = (v: unknown): J | null => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as J) : null);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Single-quoted for a POSIX shell. */
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export function curl(e: unknown): string | null {
  if (str(at(e, "protocol")) !== "http") return null;
  const r = obj(at(e, "request"));
  if (!r) return null;
  const host = str(r.host) || `${str(at(e, "dst", "ip"))}:${num(at(e, "dst", "port")) ?? 80}`;
  let cmd = `curl -X ${sq(str(r.method) || "GET")} ${sq(`http://${host}${str(r.url) || "/"}`)}`;
  for (const [k, v] of Object.entries(obj(r.headers) ?? {})) {
    if (k === "host" || k === "content-length" || k.startsWith(":")) continue;
    cmd += ` \\\n  -H ${sq(`${k}: ${str(v)}`)}`;
  }
  const text = str(at(r, "body", "text"));
  if (text) cmd += ` \\\n  --data-binary ${sq(text)}`;
  return cmd;
}

const HEX_MAX = 64 * 1024;

export function hexdump(b64: string): string {
  let bin: string;
  try {
    bin = atob(b64);
  } catch {
    return "(not base64)";
  }
  const lines: string[] = [];
  const n = Math.min(bin.length, HEX_MAX);
  for (let off = 0; off < n; off += 16) {
    const chunk = bin.slice(off, Math.min(off + 16, n));
    let hex = "";
    let ascii = "";
    for (let i = 0; i < 16; i++) {
      if (i < chunk.length) {
        const c = chunk.charCodeAt(i);
        hex += c.toString(16).padStart(2, "0") + (i === 7 ? "  " : " ");
        ascii += c >= 0x20 && c < 0x7f ? chunk[i] : ".";
      } else hex += i === 7 ? "    " : "   ";
    }
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex} |${ascii}|`);
  }
  if (bin.length > n) lines.push(`... ${bin.length - n} more bytes`);
  return lines.join("\n");
}

function pretty(text: string, mime: string): string {
  if (/json/i.test(mime) || /^\s*[[{]/.test(text)) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      /* not JSON after all */
    }
  }
  return text;
}

interface Ctx {
  add: (clause: string) => void;
}

function Plus({ ctx, clause }: { ctx: Ctx; clause: string }) {
  return (
    <button class="plus" title={`add to the filter: ${clause}`} onClick={() => ctx.add(clause)}>
      +
    </button>
  );
}

function KV({ k, v, ctx, clause }: { k: string; v: ComponentChildren; ctx: Ctx; clause?: string }) {
  return (
    <tr>
      <th>{k}</th>
      <td>
        {v}
        {clause && <Plus ctx={ctx} clause={clause} />}
      </td>
    </tr>
  );
}

function Headers({ title, h, path, ctx }: { title: string; h: unknown; path: string; ctx: Ctx }) {
  const entries = Object.entries(obj(h) ?? {});
  if (entries.length === 0) return null;
  return (
    <section>
      <h4>{title}</h4>
      <table class="kv">
        <tbody>
          {entries.map(([k, v]) => (
            <KV key={k} k={k} v={str(v)} ctx={ctx} clause={eq(path, str(v), k)} />
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Body({ b }: { b: unknown }) {
  const body = obj(b);
  if (!body) return null;
  const mime = str(body.mime);
  const note = [`${size(num(body.size) ?? 0)}`, mime, str(body.encoding), body.truncated === true ? "truncated" : ""].filter(Boolean).join(" · ");
  let content: string | null = null;
  if (typeof body.text === "string") content = pretty(body.text, mime);
  else if (typeof body.base64 === "string") content = hexdump(body.base64);
  return (
    <section>
      <h4>
        body <span class="muted">{note}</span>
      </h4>
      {content !== null && content !== "" && <pre class="body">{content}</pre>}
    </section>
  );
}

function Messages({ title, m }: { title: string; m: unknown }) {
  const list = arr(m);
  if (list.length === 0) return null;
  return (
    <section>
      <h4>{title}</h4>
      {list.map((msg, i) => {
        const o = obj(msg) ?? {};
        const head = `#${i + 1} · ${size(num(o.size) ?? 0)}${o.compressed === true ? " · compressed" : ""}`;
        const content =
          o.json !== undefined ? JSON.stringify(o.json, null, 2) : o.fields !== undefined ? JSON.stringify(o.fields, null, 2) : typeof o.base64 === "string" ? hexdump(o.base64) : "";
        return (
          <div key={i} class="msg">
            <div class="muted">{head}</div>
            {content && <pre class="body">{content}</pre>}
          </div>
        );
      })}
    </section>
  );
}

function Records({ title, list, ctx }: { title: string; list: unknown; ctx: Ctx }) {
  const rs = arr(list);
  if (rs.length === 0) return null;
  return (
    <section>
      <h4>{title}</h4>
      <table class="grid">
        <thead>
          <tr>
            <th>name</th>
            <th>type</th>
            <th>ttl</th>
            <th>data</th>
          </tr>
        </thead>
        <tbody>
          {rs.map((r, i) => (
            <tr key={i}>
              <td>{str(at(r, "name"))}</td>
              <td>{str(at(r, "type"))}</td>
              <td>{String(num(at(r, "ttl")) ?? "")}</td>
              <td>
                {str(at(r, "data"))}
                {title === "answers" && str(at(r, "data")) && <Plus ctx={ctx} clause={`${lit(str(at(r, "data")))} in dns_answers`} />}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

/** The fields of a protocol outside schema 1 (Redis, PostgreSQL, Kafka, ...): scalars as
 * rows, the rest (arguments, documents, payloads) as JSON. Text is Preact-escaped. */
function Fields({ r, ctx, kind }: { r: J; ctx: Ctx; kind: "request" | "response" }) {
  const scalars = Object.entries(r).filter(([, v]) => v === null || typeof v !== "object");
  const nested = Object.entries(r).filter(([, v]) => v !== null && typeof v === "object");
  const clause = (k: string, v: unknown) => {
    if (typeof v !== "string" && typeof v !== "number") return undefined;
    if (kind === "request" && k === "method") return eq("method", String(v));
    if (kind === "request" && k === "target") return eq("path", String(v));
    return eq(`${kind}.${k}`, v as string | number);
  };
  return (
    <div>
      <table class="kv">
        <tbody>
          {scalars.map(([k, v]) => (
            <KV key={k} k={k} v={v === null ? "-" : String(v)} ctx={ctx} clause={v === null ? undefined : clause(k, v)} />
          ))}
        </tbody>
      </table>
      {nested.map(([k, v]) => (
        <section key={k}>
          <h4>{k}</h4>
          <pre class="body">{JSON.stringify(v, null, 2)}</pre>
        </section>
      ))}
    </div>
  );
}

const schema1 = (p: unknown) => p === "http" || p === "grpc" || p === "dns";

function Request({ e, ctx }: { e: J; ctx: Ctx }) {
  const r = obj(e.request);
  if (!r) return <p class="muted">no request seen</p>;
  if (!schema1(e.protocol)) return <Fields r={r} ctx={ctx} kind="request" />;
  if (e.protocol === "dns") {
    return (
      <div>
        <table class="kv">
          <tbody>
            <KV k="id" v={String(num(r.id) ?? "")} ctx={ctx} />
            <KV k="opcode" v={str(r.opcode)} ctx={ctx} />
          </tbody>
        </table>
        <section>
          <h4>questions</h4>
          <table class="grid">
            <tbody>
              {arr(r.questions).map((q, i) => (
                <tr key={i}>
                  <td>
                    {str(at(q, "name"))}
                    <Plus ctx={ctx} clause={`${lit(str(at(q, "name")))} in dns_questions`} />
                  </td>
                  <td>{str(at(q, "type"))}</td>
                  <td>{str(at(q, "class"))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      </div>
    );
  }
  const grpc = e.protocol === "grpc";
  return (
    <div>
      <table class="kv">
        <tbody>
          {grpc ? (
            <>
              <KV k="service" v={str(r.service)} ctx={ctx} clause={eq("grpc_service", str(r.service))} />
              <KV k="method" v={str(r.method)} ctx={ctx} clause={eq("grpc_method", str(r.method))} />
              <KV k="path" v={str(r.path)} ctx={ctx} clause={eq("path", str(r.path))} />
            </>
          ) : (
            <>
              <KV k="method" v={str(r.method)} ctx={ctx} clause={eq("method", str(r.method))} />
              <KV k="path" v={str(r.path)} ctx={ctx} clause={eq("path", str(r.path))} />
              {str(r.query_string) && <KV k="query" v={str(r.query_string)} ctx={ctx} clause={eq("request.query_string", str(r.query_string))} />}
              <KV k="host" v={str(r.host)} ctx={ctx} clause={str(r.host) ? eq("request.host", str(r.host)) : undefined} />
              <KV k="version" v={str(e.http_version)} ctx={ctx} />
            </>
          )}
        </tbody>
      </table>
      <Headers title="headers" h={r.headers} path="request.headers" ctx={ctx} />
      {grpc ? <Messages title="messages" m={r.messages} /> : <Body b={r.body} />}
    </div>
  );
}

function Response({ e, ctx }: { e: J; ctx: Ctx }) {
  const r = obj(e.response);
  if (!r) return <p class="muted">{schema1(e.protocol) || arr(e.anomalies).includes("no_response") ? "no response seen" : "no reply expected"}</p>;
  if (!schema1(e.protocol)) return <Fields r={r} ctx={ctx} kind="response" />;
  if (e.protocol === "dns") {
    return (
      <div>
        <table class="kv">
          <tbody>
            <KV k="rcode" v={str(r.rcode)} ctx={ctx} clause={eq("dns_rcode", str(r.rcode))} />
            <KV k="truncated" v={String(r.truncated === true)} ctx={ctx} />
          </tbody>
        </table>
        <Records title="answers" list={r.answers} ctx={ctx} />
        <Records title="authorities" list={r.authorities} ctx={ctx} />
        <Records title="additionals" list={r.additionals} ctx={ctx} />
      </div>
    );
  }
  const grpc = e.protocol === "grpc";
  const code = num(r.status_code);
  return (
    <div>
      <table class="kv">
        <tbody>
          <KV k="status" v={`${code ?? "-"} ${str(r.reason)}`} ctx={ctx} clause={code === null ? undefined : eq("status_code", code)} />
          {grpc && (
            <>
              <KV k="grpc-status" v={String(num(r.grpc_status) ?? "-")} ctx={ctx} clause={num(r.grpc_status) === null ? undefined : eq("grpc_status", num(r.grpc_status) as number)} />
              {str(r.grpc_message) && <KV k="grpc-message" v={str(r.grpc_message)} ctx={ctx} />}
            </>
          )}
        </tbody>
      </table>
      <Headers title="headers" h={r.headers} path="response.headers" ctx={ctx} />
      {grpc && <Headers title="trailers" h={r.trailers} path="response.trailers" ctx={ctx} />}
      {grpc ? <Messages title="messages" m={r.messages} /> : <Body b={r.body} />}
    </div>
  );
}

function End({ side, v, ctx }: { side: "src" | "dst"; v: unknown; ctx: Ctx }) {
  const pod = obj(at(v, "pod"));
  const svc = obj(at(v, "service"));
  const ns = str(at(v, "namespace"));
  return (
    <section>
      <h4>{side === "src" ? "source (client)" : "destination (server)"}</h4>
      <table class="kv">
        <tbody>
          <KV k="ip" v={str(at(v, "ip"))} ctx={ctx} clause={eq(`${side}.ip`, str(at(v, "ip")))} />
          <KV k="port" v={String(num(at(v, "port")) ?? "")} ctx={ctx} clause={eq(`${side}.port`, num(at(v, "port")) ?? 0)} />
          {ns && <KV k="namespace" v={ns} ctx={ctx} clause={eq(`${side}.namespace`, ns)} />}
          {pod && <KV k="pod" v={str(pod.name)} ctx={ctx} clause={eq(`${side}.pod.name`, str(pod.name))} />}
          {pod && str(at(pod, "workload", "name")) && (
            <KV k={str(at(pod, "workload", "kind")) || "workload"} v={str(at(pod, "workload", "name"))} ctx={ctx} clause={eq(`${side}.pod.workload.name`, str(at(pod, "workload", "name")))} />
          )}
          {pod && str(pod.node) && <KV k="node" v={str(pod.node)} ctx={ctx} />}
          {svc && <KV k="service" v={str(svc.name)} ctx={ctx} clause={eq(`${side}.service.name`, str(svc.name))} />}
        </tbody>
      </table>
    </section>
  );
}

function Info({ e, ctx }: { e: J; ctx: Ctx }) {
  const anomalies = arr(e.anomalies).filter((a): a is string => typeof a === "string");
  return (
    <div>
      <table class="kv">
        <tbody>
          <KV k="time" v={str(e.timestamp)} ctx={ctx} />
          <KV k={num(e.server_elapsed_time) === undefined ? "elapsed" : "client waited"} v={latency(num(e.elapsed_time))} ctx={ctx} />
          {num(e.server_elapsed_time) !== undefined && <KV k="server took" v={latency(num(e.server_elapsed_time))} ctx={ctx} />}
          {num(e.network_time) !== undefined && <KV k="network" v={latency(num(e.network_time))} ctx={ctx} />}
          <KV k="request size" v={size(num(e.request_size) ?? 0)} ctx={ctx} />
          <KV k="response size" v={size(num(e.response_size) ?? 0)} ctx={ctx} />
          <KV k="protocol" v={`${str(e.protocol)} over ${str(e.transport)}`} ctx={ctx} clause={/^[a-z][a-z0-9_]*$/.test(str(e.protocol)) ? str(e.protocol) : eq("protocol", str(e.protocol))} />
          {arr(e.nodes).length > 1 ? (
            <KV k="seen by" v={arr(e.nodes).map(str).join(" and ")} ctx={ctx} />
          ) : (
            <KV k="node" v={str(e.node)} ctx={ctx} clause={str(e.node) ? eq("node", str(e.node)) : undefined} />
          )}
          {str(e.observed) && str(e.observed) !== "both" && <KV k="seen at" v={`the ${str(e.observed)}'s side only`} ctx={ctx} />}
          <KV k="captured by" v={str(e.capture_source)} ctx={ctx} />
          <KV k="connection" v={str(e.conn_id)} ctx={ctx} clause={eq("conn_id", str(e.conn_id))} />
          <KV k="id" v={str(e.id)} ctx={ctx} />
        </tbody>
      </table>
      <section>
        <h4>anomalies</h4>
        {anomalies.length === 0 ? (
          <p class="muted">none: the exchange was seen whole</p>
        ) : (
          <ul class="anomalies">
            {anomalies.map((a) => (
              <li key={a}>
                {a}
                <Plus ctx={ctx} clause={`${lit(a)} in anomalies`} />
              </li>
            ))}
          </ul>
        )}
      </section>
      <End side="src" v={e.src} ctx={ctx} />
      <End side="dst" v={e.dst} ctx={ctx} />
    </div>
  );
}

type Tab = "request" | "response" | "info";

export function Detail({ row, onAdd, onClose }: { row: Row; onAdd: (c: string) => void; onClose: () => void }) {
  const [tab, setTab] = useState<Tab>("request");
  const [copied, setCopied] = useState<{ note: string; text: string | null } | null>(null);
  let e: J;
  try {
    e = obj(JSON.parse(row.raw)) ?? {};
  } catch {
    e = {};
  }
  const ctx: Ctx = { add: onAdd };
  const c = curl(e);
  const copy = async (what: string, text: string) => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied({ note: `${what} copied`, text: null });
    } catch {
      setCopied({ note: `the browser refused the clipboard; ${what} is below`, text });
    }
  };
  return (
    <aside class="detail" data-testid="detail">
      <header>
        <div class="title">
          <span class={`p-${row.protocol}`}>{row.protocol}</span> <b>{row.method}</b> <span class="what">{row.what}</span>{" "}
          <span class={`s-${row.cls}`}>{row.status}</span> <span class="muted">{latency(row.latency)}</span>
        </div>
        <button class="close" title="close (Esc)" onClick={onClose}>
          ×
        </button>
      </header>
      <nav class="tabs">
        {(["request", "response", "info"] as Tab[]).map((t) => (
          <button key={t} class={tab === t ? "on" : ""} onClick={() => setTab(t)}>
            {t}
          </button>
        ))}
        <span class="grow" />
        {c && <button onClick={() => copy("curl", c)}>copy as curl</button>}
        <button onClick={() => copy("JSON", JSON.stringify(e, null, 2))}>copy JSON</button>
      </nav>
      {copied && <div class="copied">{copied.note}</div>}
      {copied?.text && <pre class="body copy">{copied.text}</pre>}
      <div class="pane">
        {tab === "request" && <Request e={e} ctx={ctx} />}
        {tab === "response" && <Response e={e} ctx={ctx} />}
        {tab === "info" && <Info e={e} ctx={ctx} />}
      </div>
    </aside>
  );
}
