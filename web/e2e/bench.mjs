// The dashboard's responsiveness under a live feed (hub/examples/web_bench.rs runs it and
// feeds the hub once this prints "measuring"). Measures on the page's main thread: the
// interval between animation frames, long tasks (> 50 ms, PerformanceObserver), the JS
// heap (CDP Performance.getMetrics) every 5 s, and the entries the page received.
//
// env: HUB, SECS; CHROMIUM (default /usr/bin/chromium)

import { chromium } from "playwright-core";

const HUB = process.env.HUB;
const SECS = Number(process.env.SECS ?? 60);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));
const cdp = await page.context().newCDPSession(page);
await cdp.send("Performance.enable");
const heap = async () => {
  const { metrics } = await cdp.send("Performance.getMetrics");
  return metrics.find((m) => m.name === "JSHeapUsedSize").value / 1048576;
};
const received = () => page.evaluate(() => Number((document.querySelector("[data-testid=footer]")?.textContent ?? "").replace(/,/g, "").match(/^(\d+)/)?.[1] ?? 0));

await page.goto(`${HUB}/`);
await page.waitForFunction(() => document.querySelector("[data-testid=conn]")?.textContent === "live", null, { timeout: 20000 });
await page.evaluate(() => {
  const w = window;
  w.__frames = [];
  w.__long = [];
  let last = performance.now();
  const tick = (t) => {
    w.__frames.push(t - last);
    last = t;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) w.__long.push(e.duration);
  }).observe({ type: "longtask" });
});
const heapStart = await heap();
console.log("measuring");
const t0 = Date.now();
let heapPeak = heapStart;
const samples = [];
while (Date.now() - t0 < SECS * 1000) {
  await new Promise((r) => setTimeout(r, 5000));
  const h = await heap();
  heapPeak = Math.max(heapPeak, h);
  samples.push(h);
  const kept = await received();
  console.log(`web: ${Math.round((Date.now() - t0) / 1000)} s: ${kept} rows kept, JS heap ${h.toFixed(0)} MB`);
}
const { frames, long } = await page.evaluate(() => ({ frames: window.__frames.slice(1), long: window.__long }));
const counters = await page.evaluate(() => document.querySelector("[data-testid=rate]")?.textContent);
await page.getByTestId("tab-stats").click();
const pageStats = await page.getByTestId("page").textContent();
const heapEnd = await heap();
await browser.close();

const sorted = [...frames].sort((a, b) => a - b);
const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
const secs = (Date.now() - t0) / 1000;
console.log(`web: ${frames.length} frames in ${secs.toFixed(0)} s = ${(frames.length / secs).toFixed(1)} fps; frame interval p50 ${q(0.5).toFixed(1)} ms, p95 ${q(0.95).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)} ms, max ${q(1).toFixed(0)} ms; ${frames.filter((f) => f > 50).length} frames over 50 ms`);
console.log(`web: long tasks: ${long.length}, ${long.reduce((a, b) => a + b, 0).toFixed(0)} ms in all, longest ${Math.max(0, ...long).toFixed(0)} ms`);
console.log(`web: JS heap ${heapStart.toFixed(0)} MB at start, peak ${heapPeak.toFixed(0)} MB, ${heapEnd.toFixed(0)} MB at the end; last minute's samples ${samples.map((s) => s.toFixed(0)).join(" ")}`);
console.log(`web: rate shown ${counters}; page counters: ${pageStats.replace(/([a-z_]+)([\d,]+)/g, "$1 $2 ").trim()}`);
if (errors.length) {
  console.log(`web: page errors: ${errors.join("; ")}`);
  process.exit(1);
}
