import { useEffect, useState } from "preact/hooks";

/** `load()` now and every `every` ms while `deps` stay the same: its last value and its
 *  last error (cleared by the next success). */
export function usePoll<T>(load: () => Promise<T>, every: number, deps: unknown[]): [T | null, string | null] {
  const [value, setValue] = useState<T | null>(null);
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const tick = async () => {
      try {
        const v = await load();
        if (live) {
          setValue(v);
          setErr(null);
        }
      } catch (e) {
        if (live) setErr(String((e as Error).message));
      }
    };
    tick();
    const t = setInterval(tick, every);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, deps);
  return [value, err];
}
