// The benches' --set: keys every demo node's pgherd.toml sets besides the demo's own, validated by
// the real config loader.
import { expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { demoNodes, parseDemoSettings, renderDemoConfig } from "../../src/demo/config.ts";

const node = demoNodes("/tmp/x", [1, 2, 3, 4, 5, 6, 7, 8, 9])[0]!;
const render = (set: string[]) => renderDemoConfig(node, { secret: "s".repeat(32), token: "t".repeat(32), beaconPort: 10, osUser: "postgres", settings: parseDemoSettings(set) });

test("section.key=value lands in that section, [postgres] ones under the demo's own table", () => {
  const cfg = parseConfig(render(["election.heartbeat_ms=300", "postgres.loop_ms=1000", "election.jitter_ms=200"]), "n1/pgherd.toml");
  expect(cfg.election.heartbeat_ms).toBe(300);
  expect(cfg.election.jitter_ms).toBe(200);
  expect(cfg.postgres.loop_ms).toBe(1000);
  expect(cfg.postgres.port).toBe(node.pgPort);
});

test("a malformed item or an invalid value is refused, naming it", () => {
  expect(() => parseDemoSettings(["heartbeat_ms=300"])).toThrow('--set "heartbeat_ms=300": expected section.key=value');
  expect(() => render(["election.heartbeat_ms=5000"])).toThrow("heartbeat_ms");
});
