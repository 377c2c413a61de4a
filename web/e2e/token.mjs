// A hub that listens beyond loopback: the page asks for the token once (a wrong one is
// refused), then streams with it. env: HUB (reached on 127.0.0.1), TOKEN, CHROMIUM
import { chromium } from "playwright-core";

const { HUB, TOKEN } = process.env;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
const page = await browser.newPage();
// every address the page asks for: the token must be in none
const asked = [];
page.on("request", (r) => asked.push(r.url()));
page.on("websocket", (ws) => asked.push(ws.url()));
try {
  await page.goto(`${HUB}/`);
  await page.getByTestId("token").fill("not-the-token");
  await page.getByTestId("token-form").getByRole("button").click();
  await page.getByText("the hub refused that token").waitFor({ timeout: 10000 });
  console.log("ok: a wrong token is refused");
  await page.getByTestId("token").fill(TOKEN);
  await page.getByTestId("token-form").getByRole("button").click();
  await page.waitForFunction(() => document.querySelector("[data-testid=conn]")?.textContent === "live", null, { timeout: 10000 });
  console.log("ok: with the token the stream is live");
  // asked once: a reload in the same tab does not ask again
  await page.reload();
  await page.waitForFunction(() => document.querySelector("[data-testid=conn]")?.textContent === "live", null, { timeout: 10000 });
  console.log("ok: asked once");
  const leaked = asked.filter((u) => u.includes(TOKEN));
  if (leaked.length > 0) throw new Error(`the token is in URLs: ${leaked.join(" ")}`);
  if (asked.length < 3) throw new Error(`only ${asked.length} requests seen`);
  const stored = await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }) + document.cookie);
  if (stored.includes(TOKEN)) throw new Error("the page can read the token (storage or a script-readable cookie)");
  const cookies = await page.context().cookies();
  const c = cookies.find((c) => c.value === TOKEN);
  if (!c || !c.httpOnly || c.sameSite !== "Strict") throw new Error(`the session cookie is not HttpOnly and SameSite=Strict: ${JSON.stringify(cookies)}`);
  console.log(`ok: the token is in no URL (${asked.length} requests) and only in an HttpOnly, SameSite=Strict cookie`);
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
