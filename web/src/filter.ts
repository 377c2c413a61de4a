// Filter clauses built from values a user clicks in the detail panel (Kubeshark's "+").
// Values are captured text: they go into the expression as escaped string literals only.

/** A CEL string literal holding `s` exactly. */
export function lit(s: string): string {
  return (
    '"' +
    s.replace(/[\\"\u0000-\u001f\u007f]/g, (c) =>
      c === "\\" ? "\\\\" : c === '"' ? '\\"' : "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
    ) +
    '"'
  );
}

/** A field path, with `["key"]` for a map key (header names). */
export function field(path: string, key?: string): string {
  return key === undefined ? path : `${path}[${lit(key)}]`;
}

export function eq(path: string, value: string | number, key?: string): string {
  return `${field(path, key)} == ${typeof value === "number" ? String(value) : lit(value)}`;
}

/** `filter && clause`, parenthesising the filter when it has a top-level `or`. */
export function and(filter: string, clause: string): string {
  const f = filter.trim();
  if (f === "") return clause;
  return /\|\||\bor\b/.test(f) ? `(${f}) && ${clause}` : `${f} && ${clause}`;
}
