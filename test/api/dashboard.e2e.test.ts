// The web dashboard in headless Chromium (Debian's package) driven by playwright-core, against a
// live three-node cluster: three nodes with the right roles, a wrong token refused, a switchover
// with the token, and the new primary on the page without a reload. Screenshots (laptop and phone
// width) go to the test's artifacts directory.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pgSkipReason } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";
import { http, settled, startLoopCluster, type LoopCluster, type LoopNode } from "./loopback.ts";

const CHROMIUM = process.env.PGHERD_CHROMIUM ?? "/usr/bin/chromium";

type Pw = typeof import("playwright-core");
type Browser = Awaited<ReturnType<Pw["chromium"]["launch"]>>;
type Page = Awaited<ReturnType<Browser["newPage"]>>;

const pw: Pw | null = await import("playwright-core").catch(() => null);
const missing = pgSkipReason
  ?? (pw ? null : "playwright-core is not installed (npm install --save-dev playwright-core)")
  ?? (existsSync(CHROMIUM) ? null : `${CHROMIUM} is missing (apt-get install chromium)`);
requireReal("dashboard browser test", missing);

describe("dashboard in a browser", () => {
  let c: LoopCluster;
  let primary: LoopNode;
  let standbys: LoopNode[];
  let browser: Browser | undefined;
  let page: Page;
  const problems: string[] = [];

  const roleOf = (name: string) => page.locator(`#topology g.node[data-node="${name}"]`).getAttribute("data-role", { timeout: 5000 });

  beforeAll(async () => {
    c = await startLoopCluster({ test: "api-dashboard", size: 3 });
    ({ primary, standbys } = await settled(c));
    browser = await pw!.chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  }, 180_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await c?.destroy();
    if (c) console.log(`dashboard e2e logs and screenshots: ${c.dir}`);
  }, 60_000);

  test("three nodes with their roles, live", async () => {
    const res = await page.goto(`${primary.api}/`);
    expect(res?.status()).toBe(200);
    expect(res?.headers()["content-type"]).toStartWith("text/html");
    await page.evaluate(() => { (window as unknown as { loadMark: number }).loadMark = 42; });
    await page.locator("#topology g.node").nth(2).waitFor({ timeout: 15_000 });
    expect(await page.locator("#topology g.node").count()).toBe(3);
    expect(await roleOf(primary.name)).toBe("primary");
    for (const s of standbys) {
      expect(await roleOf(s.name)).toBe("standby");
      await page.locator(`#topology g.node[data-node="${s.name}"][data-state="streaming"]`).waitFor({ timeout: 15_000 });
      // The arrow from the primary carries the standby's lag.
      expect(await page.locator(`#topology line[data-from="${primary.name}"][data-to="${s.name}"]`).count()).toBe(1);
      expect(await page.locator(`#topology text[data-lag-for="${s.name}"]`).textContent()).toMatch(/\d+(\.\d)? (B|kB|MB)/);
    }
    expect(await page.locator("#members tbody tr").count()).toBe(3);
    expect(await page.locator("#conn").textContent()).toBe("live");
    await page.locator("#timeline li").first().waitFor();
    await page.screenshot({ path: join(c.dir, "dashboard-before.png"), fullPage: true });
  }, 60_000);

  test("a wrong token is refused and nothing changes", async () => {
    await page.selectOption("#switchover-to", standbys[0]!.name);
    await page.click("#btn-switchover");
    await page.fill("#token", `${c.token}-wrong`);
    await page.click("#confirm-ok");
    await page.locator("#result", { hasText: /^403: wrong API token/ }).waitFor({ timeout: 10_000 });
    expect(await roleOf(primary.name)).toBe("primary");
    expect((await http(`${primary.api}/primary`)).status).toBe(200);
    // The browser logs the refused request as a console error: expected here, not after.
    const i = problems.findIndex((p) => p.includes("status of 403"));
    if (i >= 0) problems.splice(i, 1);
  }, 30_000);

  test("switchover with the token: the new primary appears without a reload", async () => {
    const target = standbys[0]!;
    await page.selectOption("#switchover-to", target.name);
    await page.click("#btn-switchover");
    expect(await page.locator("#confirm-text").textContent()).toContain(`to ${target.name}`);
    await page.fill("#token", c.token);
    await page.click("#confirm-ok");
    await page.locator("#result", { hasText: /^200: / }).waitFor({ timeout: 60_000 });
    await page.locator(`#topology g.node[data-node="${target.name}"][data-role="primary"]`).waitFor({ timeout: 30_000 });
    await page.locator(`#topology g.node[data-node="${primary.name}"][data-role="standby"][data-state="streaming"]`).waitFor({ timeout: 60_000 });
    expect(await page.evaluate(() => (window as unknown as { loadMark?: number }).loadMark)).toBe(42); // same document: no reload
    await page.locator("#timeline li.switchover").first().waitFor({ timeout: 15_000 });
    expect((await http(`${target.api}/primary`)).status).toBe(200);
    await page.screenshot({ path: join(c.dir, "dashboard-after-switchover.png"), fullPage: true });
  }, 120_000);

  test("readable at phone width", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator("#topology g.node").nth(2).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(c.dir, "dashboard-phone.png"), fullPage: true });
    expect(problems).toEqual([]);
  }, 30_000);
});
