// The dashboard shows a scheduled switchover and cancels it (DELETE /switchover with the token), and
// its badge says stale once snapshots stop coming (web/live.js), in headless Chromium against a real
// API server whose source is a fake: the agent is not the point.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { startApi, type ApiServer } from "../../src/api/server.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { ClusterView, MemberRow } from "../../src/core/cluster-view.ts";
import { memoryLogger } from "../../src/log.ts";
import { clusterView, fakeSource } from "./fake-source.ts";

const CHROMIUM = process.env.PGHERD_CHROMIUM ?? "/usr/bin/chromium";
type Pw = typeof import("playwright-core");
type Browser = Awaited<ReturnType<Pw["chromium"]["launch"]>>;
type Page = Awaited<ReturnType<Browser["newPage"]>>;
const pw: Pw | null = await import("playwright-core").catch(() => null);
const skip = (pw ? null : "playwright-core is not installed") ?? (existsSync(CHROMIUM) ? null : `${CHROMIUM} is missing (apt-get install chromium)`);
if (skip) console.warn(`SKIP dashboard schedule test: ${skip}`);

const TOKEN = "t0ken-for-the-dashboard-test-0123456789abcdef";
const n1: MemberRow = {
  id: "0000000000000001", name: "n1", host: "127.0.0.1", port: 5432, role: "primary", state: "running", leader: true, voter: true,
  timeline: 1, lsn: "0/3000148", lagBytes: null, lagSeconds: null, note: "", error: null,
};
const scheduled = { at: "2026-12-01T17:00:00.000Z", to: "n3", requestedAt: "2026-12-01T16:00:00.000Z" };

describe.skipIf(skip !== null)("dashboard: scheduled switchover", () => {
  let view: ClusterView = clusterView({ members: [n1] });
  /** While set, snapshots wait for it (the agent's side goes silent). */
  let hold: Promise<void> | null = null;
  const source = fakeSource({ answer: () => ({ status: 200, ok: true, message: "scheduled switchover cancelled" }) });
  source.clusterView = async () => {
    await hold;
    return { source: "leader", view };
  };
  let api: ApiServer;
  let browser: Browser | undefined;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    const config = parseConfig(`cluster = "test"\nsecret = "${"s".repeat(40)}"\n[api]\ntoken = "${TOKEN}"\n`, "test.toml");
    api = startApi({ host: "127.0.0.1", port: 0, source, log: memoryLogger(), config, eventsIntervalMs: 100 });
    browser = await pw!.chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  }, 60_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await api?.stop();
  }, 30_000);

  test("hidden without one, shown when the leader has one, cancelled with the token", async () => {
    await page.goto(`${api.url}/`);
    await page.locator("#topology g.node[data-node=n1]").waitFor({ timeout: 15_000 });
    expect(await page.locator("#sum-scheduled-row").isHidden()).toBe(true);
    expect(await page.locator("#btn-cancel-switchover").isDisabled()).toBe(true);

    view = clusterView({ members: [n1], scheduledSwitchover: scheduled });
    await page.locator("#sum-scheduled-row").waitFor({ state: "visible", timeout: 10_000 });
    expect(await page.locator("#sum-scheduled").textContent()).toStartWith("to n3 at ");
    expect(await page.locator("#sum-scheduled").getAttribute("title")).toContain(scheduled.at);

    source.requests.length = 0;
    await page.click("#btn-cancel-switchover");
    expect(await page.locator("#confirm-text").textContent()).toStartWith("Cancel the switchover scheduled for");
    await page.fill("#token", TOKEN);
    await page.click("#confirm-ok");
    await page.locator("#result", { hasText: /^200: scheduled switchover cancelled/ }).waitFor({ timeout: 10_000 });
    expect(source.requests).toEqual([{ kind: "switchover-cancel" }]);

    view = clusterView({ members: [n1] });
    await page.locator("#sum-scheduled-row").waitFor({ state: "hidden", timeout: 10_000 });
    expect(await page.locator("#btn-cancel-switchover").isDisabled()).toBe(true);
    expect(problems).toEqual([]);
  }, 60_000);

  test("the badge says stale while the open stream carries no snapshot, live again when they come", async () => {
    await page.locator("#conn", { hasText: /^live$/ }).waitFor({ timeout: 10_000 });
    let release = () => {};
    hold = new Promise<void>((r) => (release = r));
    try {
      // Snapshots every 100 ms: stale after 500 ms without one.
      await page.locator("#conn", { hasText: /^stale: no update for \d/ }).waitFor({ timeout: 10_000 });
      expect(await page.locator("#conn").getAttribute("class")).toBe("badge bad");
    } finally {
      hold = null;
      release();
    }
    await page.locator("#conn", { hasText: /^live$/ }).waitFor({ timeout: 10_000 });
    expect(problems).toEqual([]);
  }, 60_000);
});
