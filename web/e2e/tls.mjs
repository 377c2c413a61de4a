// The dashboard's TLS status in headless Chromium, against a live tap's hub
// (tests/tls_stacks.rs starts it while gnutls-cli, whose TLS kshark cannot read, holds a
// connection): the header's badge, and the Stats tab's table with the process and why.
//
// env: HUB (http://127.0.0.1:PORT), CHROMIUM, SHOTS, WANT_PROCESS (gnutls-cli)

import { chromium } from "playwright-core";
import { ok, until } from "./util.mjs";

const env = process.env;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(env.HUB + "/");
  const badge = page.getByTestId("tls-blind");
  await until("the badge of TLS not readable", async () => (await badge.count()) === 1 && (await badge.textContent()).startsWith("TLS not readable"), 10000);
  ok(`the header says: ${await badge.textContent()}`);
  await page.getByTestId("tab-stats").click();
  const table = page.getByTestId("tls-not-readable");
  const text = await until("the table of TLS not readable", async () => {
    const t = (await table.count()) === 1 ? await table.textContent() : "";
    return t.includes(env.WANT_PROCESS) ? t : "";
  }, 10000);
  if (!text.includes("GnuTLS") || !text.includes("not hooked")) throw new Error(`the table lacks the stack or the reason: ${text}`);
  ok("the Stats tab lists the process, its TLS stack and why");
  await page.screenshot({ path: `${env.SHOTS}/tls-not-readable.png`, fullPage: true });
  ok("screenshot");
} finally {
  await browser.close();
}
