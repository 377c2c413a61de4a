// Hostile web pages against a hub on loopback, in real Chromium: a page on another origin
// (http://evil.example:EVIL_PORT, mapped to 127.0.0.1 and served by the test, so that
// the browser treats it as a local page as it would a page on a dev server) tries to read the stream and the
// entries and to make the hub compile a costly filter; a DNS-rebinding page
// (rebind.example, mapped to 127.0.0.1, on the hub's own port) tries the same as "same
// origin". Nothing may be read. Then the hub's own dashboard must still work.
// env: HUB_PORT, EVIL_PORT, CHROMIUM
import { chromium } from "playwright-core";

const { HUB_PORT, EVIL_PORT, CHROMIUM } = process.env;
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP rebind.example 127.0.0.1"],
});
const page = await browser.newPage();
function fail(m) {
  console.error(`FAILED: ${m}`);
  process.exit(1);
}
try {
  await page.goto(`http://evil.example:${EVIL_PORT}/`);
  const heavy = Array(1200).fill('path.matches("\\\\w{20}")').join(" || ");
  const got = await page.evaluate(
    async ({ port, heavy }) => {
      const out = { wsMessages: 0, wsOpened: false, cors: "", nocors: "", check: "" };
      await new Promise((done) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/api/stream?last=1000`);
        ws.onopen = () => (out.wsOpened = true);
        ws.onmessage = () => out.wsMessages++;
        ws.onerror = ws.onclose = () => done();
        setTimeout(done, 3000);
      });
      try {
        const r = await fetch(`http://127.0.0.1:${port}/api/entries`);
        out.cors = `read ${(await r.text()).length} bytes`;
      } catch {
        out.cors = "blocked";
      }
      try {
        const r = await fetch(`http://127.0.0.1:${port}/api/entries`, { mode: "no-cors" });
        out.nocors = r.type;
      } catch {
        out.nocors = "blocked";
      }
      try {
        await fetch(`http://127.0.0.1:${port}/api/check?filter=${encodeURIComponent(heavy)}`, { mode: "no-cors" });
        out.check = "sent";
      } catch {
        out.check = "blocked";
      }
      return out;
    },
    { port: HUB_PORT, heavy },
  );
  if (got.wsMessages > 0 || got.wsOpened) fail(`a page on another origin opened the stream: ${JSON.stringify(got)}`);
  if (got.cors !== "blocked") fail(`a page on another origin read /api/entries: ${JSON.stringify(got)}`);
  console.log(`ok: a page on http://evil.example read nothing ${JSON.stringify(got)}`);

  // DNS rebinding: the attacker's name now points at 127.0.0.1, and its page is on the
  // hub's port, so the browser thinks the hub is the attacker's own origin
  const resp = await page.goto(`http://rebind.example:${HUB_PORT}/`);
  if (resp.status() !== 421) fail(`the hub answered ${resp.status()} to Host rebind.example`);
  const again = await page.evaluate(async () => {
    try {
      const r = await fetch("/api/entries?limit=5");
      return { status: r.status, body: await r.text() };
    } catch (e) {
      // Chromium turns a 421 into a network error
      return { status: 421, body: String(e) };
    }
  });
  if (again.status !== 421 || again.body.includes('"protocol"')) fail(`a rebound name read entries: ${JSON.stringify(again)}`);
  const wsRebound = await page.evaluate(
    (port) =>
      new Promise((done) => {
        let n = 0;
        const ws = new WebSocket(`ws://rebind.example:${port}/api/stream?last=10`);
        ws.onmessage = () => n++;
        ws.onerror = ws.onclose = () => done(n);
        setTimeout(() => done(n), 3000);
      }),
    HUB_PORT,
  );
  if (wsRebound > 0) fail(`a rebound name read ${wsRebound} entries from the stream`);
  console.log("ok: a rebound name (rebind.example -> 127.0.0.1) reaches nothing: 421");

  // the hub's own page, from its own origin, still works
  await page.goto(`http://127.0.0.1:${HUB_PORT}/`);
  await page.waitForFunction(() => document.querySelector("[data-testid=conn]")?.textContent === "live", null, { timeout: 15000 });
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=rows] [role=row]").length > 0, null, { timeout: 15000 });
  console.log("ok: the hub's own dashboard is live and shows entries");
} catch (e) {
  fail(e.message);
}
await browser.close();
