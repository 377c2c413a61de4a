// The dashboard in headless Chromium against a running hub (tests/web.rs starts it and
// passes what to expect). Prints "ok: ..." per check; exits non-zero on the first failure.
//
// env: HUB, KSHARK, TOKEN_FILE, SHOP_PCAP, INVENTORY, REAL_PCAPS (":"-separated),
//      WANT_TOTAL, WANT_ERRORS, CHROMIUM, SHOTS

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { check, ok, until } from "./util.mjs";

const env = process.env;
const HUB = env.HUB;
const WANT_TOTAL = Number(env.WANT_TOTAL);
const WANT_ERRORS = Number(env.WANT_ERRORS);
const problems = [];

function worker(file, node) {
  return new Promise((resolve, reject) => {
    const args = ["worker", "--hub", HUB, "--token-file", env.TOKEN_FILE, "--read", file, "--speed", "0", "--inventory", env.INVENTORY, "--node", node];
    const p = spawn(env.KSHARK, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    p.on("exit", (code) => (code === 0 ? resolve(err) : reject(new Error(`kshark worker ${file}: exit ${code}: ${err}`))));
  });
}

const browser = await chromium.launch({
  executablePath: env.CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
});
const ctx = await browser.newContext({ viewport: { width: 1500, height: 900 } });
await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: HUB });
const page = await ctx.newPage();
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
page.on("dialog", (d) => {
  problems.push(`a dialog opened: ${d.message()}`);
  d.dismiss();
});
// anything the page asks of another origin is a failure: every asset is in the binary
page.on("request", (r) => !r.url().startsWith(HUB) && !r.url().startsWith("ws://127.0.0.1") && !r.url().startsWith("data:") && problems.push(`request to ${r.url()}`));
const shot = (name) => page.screenshot({ path: `${env.SHOTS}/${name}.png` });
const rowCount = () => page.evaluate(() => Number((document.querySelector("[data-testid=footer]")?.textContent ?? "").replace(/,/g, "").match(/^(\d+)/)?.[1] ?? -1));

try {
  await page.goto(`${HUB}/`);
  await until("the stream to be live", async () => (await page.getByTestId("conn").textContent()) === "live");
  check((await rowCount()) === 0, "rows before anything was captured");
  ok("the page loads from the hub and its stream is live");

  // rows stream in while the workers ship
  await worker(env.SHOP_PCAP, "node-1");
  for (const f of env.REAL_PCAPS.split(":")) await worker(f, "node-2");
  await until(`all ${WANT_TOTAL} entries as rows`, async () => (await rowCount()) === WANT_TOTAL);
  const visible = await page.locator(".tr").count();
  check(visible > 10 && visible < 80, `the table renders only what is in view (${visible} rows in the DOM of ${WANT_TOTAL})`);
  await shot("1-traffic");
  ok(`${WANT_TOTAL} entries streamed in live; ${visible} rows in the DOM`);

  // a bad filter shows its error and position, and changes nothing
  const filter = page.getByTestId("filter");
  await filter.fill("http && status_code = 500");
  await filter.press("Enter");
  const error = await until("the filter's error", async () => (await page.getByTestId("filter-error").isVisible()) && page.getByTestId("filter-error").textContent());
  check(/position 20/.test(error) && /==/.test(error), `the error names the position: ${error}`);
  check(!page.url().includes("q="), `a bad filter went into the URL: ${page.url()}`);
  check((await rowCount()) === WANT_TOTAL, "a bad filter changed the rows");
  await shot("2-bad-filter");
  ok(`a bad filter shows "${error.trim()}"`);

  // a good one narrows the rows and lands in the URL
  await filter.fill("http && status_code >= 500");
  await filter.press("Enter");
  await until(`${WANT_ERRORS} rows for status >= 500`, async () => (await rowCount()) === WANT_ERRORS);
  check(new URL(page.url()).searchParams.get("q") === "http && status_code >= 500", `the filter is not in the URL: ${page.url()}`);
  const statuses = await page.locator(".tr .c-status").allTextContents();
  check(statuses.length > 0 && statuses.every((s) => /^5\d\d$/.test(s)), `rows other than 5xx: ${statuses}`);
  ok(`the filter narrows to ${WANT_ERRORS} rows and is in the URL: ${page.url()}`);

  // the URL is a shareable view
  const shared = await browser.newPage({ viewport: { width: 1500, height: 900 } });
  await shared.goto(page.url());
  await until("the shared view's rows", async () => (await shared.locator(".tr").count()) === Math.min(WANT_ERRORS, visible));
  check((await shared.getByTestId("filter").inputValue()) === "http && status_code >= 500", "the shared URL did not fill the filter");
  await shared.close();
  ok("the URL opens the same view in another page");

  // the detail, and a click on a value adds it to the filter
  await filter.fill("");
  await filter.press("Enter");
  await until("all rows back", async () => (await rowCount()) === WANT_TOTAL);
  await filter.fill('path.startsWith("/search")');
  await filter.press("Enter");
  await until("the hostile entry alone", async () => (await rowCount()) === 1);
  await page.locator(".tr").first().click();
  const detail = page.getByTestId("detail");
  await until("the detail", () => detail.isVisible());
  const text = await detail.textContent();
  for (const want of ['<img src=x onerror="window.__xss=2">', "javascript:window.__xss=4", "x-evil", "GET"]) check(text.includes(want), `the detail lacks ${want}: ${text}`);
  await shot("3-detail-request");
  await detail.getByRole("button", { name: "response" }).click();
  const body = await detail.locator("pre.body").first().textContent();
  check(body.includes("<script>window.__xss=3</script><img src=x onerror=window.__xss=5>&amp;"), `the response body is not shown as text: ${body}`);
  await shot("4-detail-response");
  await detail.getByRole("button", { name: "copy as curl" }).click();
  const clip = await page.evaluate(() => navigator.clipboard.readText());
  check(clip.startsWith("curl -X 'GET' 'http://svc/search?q=<script>") && clip.includes("-H 'x-evil: <img"), `copy as curl gave: ${clip}`);
  ok("copy as curl");
  await detail.getByRole("button", { name: "info" }).click();
  await detail.locator("tr", { hasText: "pod" }).first().getByRole("button", { name: "+" }).click();
  await until("the clause in the URL", async () => new URL(page.url()).searchParams.get("q") === 'path.startsWith("/search") && src.pod.name == "front-end-6f8d-x1"');
  await until("the narrowed rows", async () => (await rowCount()) === 1);
  ok(`a click on "+" adds to the filter: ${new URL(page.url()).searchParams.get("q")}`);

  // captured markup ran nothing and became no element
  const xss = await page.evaluate(() => ({ flag: window.__xss, imgs: document.querySelectorAll("img").length, scripts: [...document.scripts].map((s) => s.src) }));
  check(xss.flag === undefined, `captured script ran: window.__xss = ${xss.flag}`);
  check(xss.imgs === 0, `${xss.imgs} <img> elements on the page`);
  check(xss.scripts.every((s) => s.startsWith(`${HUB}/assets/`)), `scripts not the page's own: ${xss.scripts}`);
  const row = await page.locator(".tr .c-what").first().textContent();
  check(row === "/search?q=<script>window.__xss=1</script>&x=&lt;b&gt;", `the path is not shown as text: ${row}`);
  ok("no captured script ran: <script>, <img onerror>, javascript: and entities render as text");

  // export of the current filter
  const nd = await (await page.request.get(await page.getByTestId("export-ndjson").getAttribute("href"))).text();
  check(nd.trim().split("\n").length === 1 && JSON.parse(nd).request.path === "/search", `the NDJSON export: ${nd.slice(0, 200)}`);
  const har = JSON.parse(await (await page.request.get(await page.getByTestId("export-har").getAttribute("href"))).text());
  check(har.log.entries.length === 1 && har.log.entries[0].request.url.includes("/search"), "the HAR export");
  ok("NDJSON and HAR exports of the current filter");

  // the service map: workloads by namespace, the edges with their figures
  await page.getByTestId("tab-map").click();
  const summary = await until("the map", async () => {
    const t = await page.getByTestId("map-summary").textContent();
    return t.includes("workloads") && t;
  });
  const edges = await page.getByTestId("edges").locator("tbody tr").allTextContents();
  for (const [a, b] of [
    ["front-end", "catalogue"],
    ["front-end", "carts"],
    ["front-end", "orders"],
    ["orders", "payment"],
    ["orders", "user"],
  ]) {
    check(edges.some((e) => e.startsWith(`sock-shop/${a}sock-shop/${b}http`)), `no edge ${a} -> ${b} in ${edges.join(" | ")}`);
  }
  check(edges.some((e) => e.startsWith("sock-shop/front-endkube-system/corednsdns")), `no DNS edge to coredns: ${edges.join(" | ")}`);
  const pay = edges.find((e) => e.startsWith("sock-shop/orderssock-shop/payment"));
  check(/12\.5%/.test(pay), `orders -> payment should fail 12.5% (5 of 40): ${pay}`);
  check((await page.getByTestId("graph").locator("canvas").count()) > 0, "the graph drew no canvas");
  await page.waitForTimeout(500);
  await shot("5-service-map");
  ok(`service map: ${summary}; edges ${edges.length}`);

  // pick the payment edge and see its golden signals
  await page.getByTestId("edges").locator("tbody tr", { hasText: "sock-shop/payment" }).click();
  await page.getByTestId("pick-signals").click();
  await until("the signals of the edge", async () => /40 requests, 5 errors/.test(await page.getByTestId("signals-summary").textContent()));
  for (const c of ["chart-rate", "chart-errors", "chart-latency"]) check((await page.getByTestId(c).locator("canvas").count()) === 1, `${c} drew nothing`);
  await shot("6-signals-edge");
  await page.getByTestId("signals-of").selectOption("all");
  await until("the signals of all traffic", async () => (await page.getByTestId("signals-summary").textContent()).startsWith(`${WANT_TOTAL} requests`));
  await shot("7-signals-all");
  ok("golden signals: request rate, error ratio and latency, for an edge and overall");

  await page.getByTestId("tab-stats").click();
  await until("the counters", async () => (await page.getByTestId("stats-drops").textContent()).includes("kernel_drops"));
  await shot("8-stats");
  ok("the stats panel");

  // the workers have left: their nodes are not captured now, and the page says so
  const badge = page.getByTestId("not-captured");
  await until("the badge of what is not captured", async () => (await badge.count()) === 1 && (await badge.textContent()) === "not captured 2");
  const list = await page.getByTestId("not-captured-list").textContent();
  check(list.includes("node node-1: no worker connected") && list.includes("node node-2: no worker connected"), `the not-captured list: ${list}`);
  await shot("9-not-captured");
  ok("nodes whose workers left are said: a header badge and the list on the Stats tab");

  check(problems.length === 0, problems.join("\n"));
  ok("no page errors, no console errors, no request elsewhere");
} catch (e) {
  await shot("failure").catch(() => {});
  console.error(`FAILED: ${e.message}`);
  if (problems.length) console.error(problems.join("\n"));
  await browser.close();
  process.exit(1);
}
await browser.close();
