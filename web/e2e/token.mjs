// A hub that listens beyond loopback: the page asks for the token once (a wrong one is
// refused), then streams with it. env: HUB (reached on 127.0.0.1), TOKEN, CHROMIUM
import { chromium } from "playwright-core";

const { HUB, TOKEN } = process.env;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
const page = await browser.newPage();
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
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
