// The dashboard says "live" only while snapshots keep coming at the agent's pace (web/live.js):
// an open stream that carries nothing turns the badge stale after STALE_AFTER_INTERVALS send
// intervals, a broken one reads "reconnecting…" then "disconnected". The rule itself, then the
// real app.js driven through a fake EventSource and a minimal fake DOM with the clock in hand
// (no browser: dashboard-schedule.test.ts drives Chromium), then the agent's side: every snapshot
// states the interval it is sent at.
import { afterAll, describe, expect, spyOn, test } from "bun:test";
import { startApi } from "../../src/api/server.ts";
import { connBadge, DEFAULT_INTERVAL_MS, intervalOf, STALE_AFTER_INTERVALS, staleAfterMs, type ConnState } from "../../src/api/web/live.js";
import type { MemberRow } from "../../src/core/cluster-view.ts";
import { memoryLogger } from "../../src/log.ts";
import { clusterView, fakeSource, nodeStatus } from "./fake-source.ts";

describe("the rule (live.js)", () => {
  const at = (over: Partial<ConnState>): ConnState => ({ now: 0, startedAt: 0, lastSnapshotAt: null, intervalMs: 1000, stream: "open", renderError: null, ...over });

  test("live while the last snapshot is at most STALE_AFTER_INTERVALS send intervals old, then stale", () => {
    expect(STALE_AFTER_INTERVALS).toBeGreaterThanOrEqual(3);
    const bound = staleAfterMs(1000);
    expect(bound).toBe(STALE_AFTER_INTERVALS * 1000);
    expect(connBadge(at({ now: 10_000 + bound, lastSnapshotAt: 10_000 }))).toEqual({ text: "live", cls: "ok" });
    expect(connBadge(at({ now: 10_000 + bound + 1, lastSnapshotAt: 10_000 }))).toEqual({ text: `stale: no update for ${((bound + 1) / 1000).toFixed(1)} s`, cls: "bad" });
    // The bound follows the agent's interval.
    expect(connBadge(at({ now: 10_000 + 5 * 100 + 1, lastSnapshotAt: 10_000, intervalMs: 100 })).cls).toBe("bad");
    expect(connBadge(at({ now: 10_000 + 60_000, lastSnapshotAt: 10_000, intervalMs: 100 })).text).toBe("stale: no update for 60 s");
  });

  test("no snapshot yet: connecting, then stale counted from the start; a broken stream: reconnecting, then disconnected", () => {
    expect(connBadge(at({ now: 1000 }))).toEqual({ text: "connecting…", cls: "warn" });
    expect(connBadge(at({ now: 6001 })).cls).toBe("bad");
    expect(connBadge(at({ now: 2000, lastSnapshotAt: 1000, stream: "error" }))).toEqual({ text: "reconnecting…", cls: "warn" });
    expect(connBadge(at({ now: 7000, lastSnapshotAt: 1000, stream: "error" }))).toEqual({ text: "disconnected: no update for 6.0 s", cls: "bad" });
    expect(connBadge(at({ now: 1000, lastSnapshotAt: 1000, renderError: "x is undefined" }))).toEqual({ text: "render error: x is undefined", cls: "bad" });
  });

  test("the interval a snapshot states is used only when it is a sane number of milliseconds", () => {
    expect(intervalOf({ intervalMs: 250 })).toBe(250);
    for (const bad of [undefined, null, "fast", { intervalMs: "1000" }, { intervalMs: 0 }, { intervalMs: -5 }, { intervalMs: Infinity }, { intervalMs: NaN }, { intervalMs: 3_600_000 }, {}]) {
      expect(intervalOf(bad)).toBe(DEFAULT_INTERVAL_MS);
    }
  });
});

/** Just enough of an element for app.js's rendering. */
class FakeElement {
  textContent = "";
  className = "";
  hidden = false;
  title = "";
  disabled = false;
  value = "";
  children: FakeElement[] = [];
  readonly classes = new Set<string>();
  readonly classList = { toggle: (c: string, on: boolean) => void (on ? this.classes.add(c) : this.classes.delete(c)) };
  private body?: FakeElement;
  get tBodies() { return [(this.body ??= new FakeElement())]; }
  get options() { return this.children; }
  setAttribute() {}
  addEventListener() {}
  append(...c: FakeElement[]) { this.children.push(...c); }
  replaceChildren(...c: FakeElement[]) { this.children = c; }
}

class FakeEventSource {
  static last: FakeEventSource | undefined;
  private readonly on = new Map<string, ((e: { data?: string }) => void)[]>();
  constructor(readonly url: string) { FakeEventSource.last = this; }
  addEventListener(type: string, f: (e: { data?: string }) => void) { this.on.set(type, [...(this.on.get(type) ?? []), f]); }
  emit(type: string, data?: string) { for (const f of this.on.get(type) ?? []) f({ data }); }
}

describe("app.js keeps its badge honest", () => {
  const byId = new Map<string, FakeElement>();
  const body = new FakeElement();
  let clock = 50_000;
  const timers: (() => void)[] = [];
  const n1: MemberRow = {
    id: "0000000000000001", name: "n1", host: "127.0.0.1", port: 5432, role: "primary", state: "running", leader: true, voter: true,
    timeline: 1, lsn: "0/3000148", lagBytes: null, lagSeconds: null, note: "", error: null,
  };
  const snapshot = (intervalMs: number) => JSON.stringify({ at: new Date().toISOString(), intervalMs, node: nodeStatus(), cluster: { source: "leader", view: clusterView({ members: [n1] }) }, history: [] });
  const badge = () => ({ text: byId.get("conn")?.textContent, cls: byId.get("conn")?.className, dimmed: body.classes.has("stale") });
  /** Time passes and the page's timer fires. */
  const pass = (ms: number) => {
    clock += ms;
    for (const t of timers) t();
  };
  const saved = { document: globalThis.document, EventSource: globalThis.EventSource, setInterval: globalThis.setInterval };
  const now = spyOn(performance, "now");
  afterAll(() => {
    now.mockRestore();
    Object.assign(globalThis, saved);
  });

  test("connecting until the first snapshot, live with it, stale when the stream goes silent, disconnected when it breaks", async () => {
    now.mockImplementation(() => clock);
    Object.assign(globalThis, {
      document: {
        getElementById: (id: string) => byId.get(id) ?? byId.set(id, new FakeElement()).get(id)!,
        createElement: () => new FakeElement(),
        createElementNS: () => new FakeElement(),
        createTextNode: (t: string) => Object.assign(new FakeElement(), { textContent: t }),
        body,
      },
      EventSource: FakeEventSource,
      setInterval: (f: () => void) => timers.push(f),
    });
    await import("../../src/api/web/app.js");
    globalThis.setInterval = saved.setInterval;
    const es = FakeEventSource.last!;
    expect(es.url).toBe("/events");
    expect(timers).toHaveLength(1);

    pass(10);
    expect(badge()).toEqual({ text: "connecting…", cls: "badge warn", dimmed: false });
    es.emit("open");
    expect(badge().text).toBe("connecting…"); // an open stream is not news yet
    es.emit("snapshot", snapshot(1000));
    expect(byId.get("sum-self")?.textContent).toBe("n2"); // rendered
    expect(badge()).toEqual({ text: "live", cls: "badge ok", dimmed: false });
    pass(5000);
    expect(badge().text).toBe("live");
    pass(100); // 5.1 s without a snapshot at 1 s intervals: the agent's side went silent
    expect(badge()).toEqual({ text: "stale: no update for 5.1 s", cls: "badge bad", dimmed: true });
    es.emit("snapshot", snapshot(100));
    expect(badge()).toEqual({ text: "live", cls: "badge ok", dimmed: false });
    pass(600); // the agent sends every 100 ms
    expect(badge().text).toBe("stale: no update for 0.6 s");

    es.emit("snapshot", snapshot(1000));
    es.emit("error");
    expect(badge()).toEqual({ text: "reconnecting…", cls: "badge warn", dimmed: false });
    pass(6000);
    expect(badge()).toEqual({ text: "disconnected: no update for 6.0 s", cls: "badge bad", dimmed: true });
    es.emit("open");
    expect(badge().text).toBe("stale: no update for 6.0 s");
    es.emit("snapshot", snapshot(1000));
    expect(badge().text).toBe("live");
    es.emit("snapshot", "{");
    expect(badge().text).toStartWith("render error: ");
    now.mockRestore();
  });
});

describe("the agent's side", () => {
  const source = fakeSource();
  const apis = [startApi({ host: "127.0.0.1", port: 0, source, log: memoryLogger(), eventsIntervalMs: 50 }), startApi({ host: "127.0.0.1", port: 0, source, log: memoryLogger() })];
  afterAll(() => Promise.all(apis.map((a) => a.stop())));

  /** The first snapshot on /events. */
  const first = async (url: string) => {
    const res = await fetch(`${url}/events`, { signal: AbortSignal.timeout(5000) });
    const reader = res.body!.getReader();
    let text = "";
    for (;;) {
      const m = /event: snapshot\ndata: (.*)\n\n/.exec(text);
      if (m) {
        await reader.cancel();
        return JSON.parse(m[1]!) as { intervalMs: number };
      }
      const r = await reader.read();
      if (r.done) throw new Error(`stream ended: ${text}`);
      text += new TextDecoder().decode(r.value);
    }
  };

  test("every snapshot states the interval it is sent at", async () => {
    expect((await first(apis[0]!.url)).intervalMs).toBe(50);
    expect((await first(apis[1]!.url)).intervalMs).toBe(1000);
  });

  test("the page loads app.js as a module and live.js beside it, under the same CSP", async () => {
    const page = await fetch(`${apis[0]!.url}/`, { headers: { accept: "text/html" } });
    expect(await page.text()).toContain('<script type="module" src="/ui/app.js"></script>');
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self';");
    const live = await fetch(`${apis[0]!.url}/ui/live.js`);
    expect({ status: live.status, type: live.headers.get("content-type") }).toEqual({ status: 200, type: "text/javascript; charset=utf-8" });
    expect(await live.text()).toContain("export function connBadge");
  });
});
