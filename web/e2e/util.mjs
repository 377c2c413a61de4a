// What the dashboard's e2e scripts share: a line per check passed, and waiting for one.

export const ok = (m) => console.log(`ok: ${m}`);

export function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** Polls `fn` every 100 ms until it returns something truthy (returned), or throws after `ms`. */
export async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}
