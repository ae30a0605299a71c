import { expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { applyLive, describePlan, planReload } from "../../src/ops/reload-plan.ts";

const base = `cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "db1"\n`;
const cfg = (extra = "") => parseConfig(`${base}${extra}`, "pgherd.toml");

test("nothing changed", () => {
  expect(planReload(cfg(), cfg())).toEqual({ changed: [], live: [], restart: [] });
  expect(describePlan(planReload(cfg(), cfg()))).toBe("no setting changed");
});

test("log level and format, every [api] key and [postgres.parameters] are live; the rest waits for a restart", () => {
  const next = cfg(`priority = 5\n[log]\nlevel = "debug"\nformat = "json"\n[api]\ntoken = "${"t".repeat(32)}"\n[postgres.parameters]\nwork_mem = "64MB"\n[discovery]\npeers = ["10.0.0.2"]\n`);
  const p = planReload(cfg(), next);
  expect(p.live).toEqual(["api.token", "log.format", "log.level", "postgres.parameters.work_mem"]);
  expect(p.restart).toEqual(["discovery.peers", "priority"]);
  expect(describePlan(p)).toBe("applied api.token, log.format, log.level, postgres.parameters.work_mem; discovery.peers, priority changed: they take effect when the agent restarts");
});

test("[[access]] rules are live, compared as a whole", () => {
  const rule = `[[access]]\nuser = "app"\naddress = "10.0.0.0/24"\n`;
  expect(planReload(cfg(), cfg(rule))).toEqual({ changed: ["access"], live: ["access"], restart: [] });
  expect(applyLive(cfg(rule), cfg()).access).toEqual([]);
});

test("a removed [postgres.parameters] entry counts as a change; values never appear", () => {
  const p = planReload(cfg(`[postgres.parameters]\nwork_mem = "64MB"\n`), cfg());
  expect(p.live).toEqual(["postgres.parameters.work_mem"]);
  expect(applyLive(cfg(`[postgres.parameters]\nwork_mem = "64MB"\n`), cfg()).postgres.parameters).toEqual({});
  const secret = planReload(cfg(), parseConfig(base.replace("s".repeat(40), "x".repeat(40)), "pgherd.toml"));
  expect(describePlan(secret)).toBe("secret changed: it takes effect when the agent restarts");
});

test("applyLive takes the live keys only, so the next reload still reports the restart keys", () => {
  const running = cfg();
  const next = cfg(`priority = 5\n[log]\nlevel = "warn"\n`);
  const now = applyLive(running, next);
  expect(now.log.level).toBe("warn");
  expect(now.priority).toBe(100);
  expect(Object.isFrozen(now.log)).toBe(true);
  expect(planReload(now, next)).toEqual({ changed: ["priority"], live: [], restart: ["priority"] });
});

test("a parameter whose name holds dots (an extension's) is changed and removed as one key (review: its old value stayed in force and a nested table went into the parameters)", () => {
  const with5k = cfg(`[postgres.parameters]\n"pg_stat_statements.max" = 5000\nwork_mem = "4MB"\n`);
  const with10k = cfg(`[postgres.parameters]\n"pg_stat_statements.max" = 10000\nwork_mem = "4MB"\n`);
  expect(planReload(with5k, with10k).live).toEqual(["postgres.parameters.pg_stat_statements.max"]);
  const now = applyLive(with5k, with10k);
  expect(now.postgres.parameters).toEqual({ "pg_stat_statements.max": 10000, work_mem: "4MB" });
  expect(planReload(now, with10k).changed).toEqual([]);
  expect(applyLive(with5k, cfg(`[postgres.parameters]\nwork_mem = "4MB"\n`)).postgres.parameters).toEqual({ work_mem: "4MB" });
});
