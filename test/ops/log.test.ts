// --log-format json: every line one JSON object with level, time, message and fields.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { jsonLine, textLine } from "../../src/log.ts";

const at = new Date("2026-12-01T18:00:00.123Z");

test("a JSON line carries level, time, message and fields (tag, objects, error)", () => {
  const err = new Error("boom");
  const line = jsonLine({ date: at, type: "error", tag: "db1:pg", args: ["start failed:", err, { attempt: 2, lsn: 5n }] });
  expect(line.endsWith("\n")).toBe(true);
  expect(line.slice(0, -1)).not.toContain("\n");
  const j = JSON.parse(line) as Record<string, unknown> & { fields: Record<string, unknown> };
  expect(j.time).toBe("2026-12-01T18:00:00.123Z");
  expect(j.level).toBe("error");
  expect(j.message).toBe("start failed: boom");
  expect(j.fields).toMatchObject({ tag: "db1:pg", error: "boom", attempt: 2, lsn: "5" });
  expect(String(j.fields.stack)).toContain("boom");
});

test("success is info, a multi-line message stays one line, a cyclic field still parses", () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  for (const l of [jsonLine({ date: at, type: "success", args: ["two\nlines"] }), jsonLine({ date: at, type: "warn", args: ["x", cyclic] })]) {
    expect(l.trimEnd().split("\n")).toHaveLength(1);
    expect(() => JSON.parse(l)).not.toThrow();
  }
  expect(JSON.parse(jsonLine({ date: at, type: "success", args: ["ok"] })).level).toBe("info");
});

test("text stays the default format", () => {
  expect(textLine({ date: at, type: "info", tag: "db1", args: ["hello", 3] })).toBe("2026-12-01T18:00:00.123Z info [db1] hello 3\n");
});

test("a process switched to json writes only JSON lines, with the level filter changeable live", () => {
  const script = `
    import { createLogControl, createLogger, setLogFormat } from ${JSON.stringify(join(import.meta.dir, "../../src/log.ts"))};
    const early = createLogger("info", "main");
    setLogFormat("json");
    const { log, setLevel } = createLogControl("info", "db1");
    const pg = log.withTag("pg");
    pg.debug("hidden"); pg.info("shown", { n: 1 }); early.warn("early logger follows");
    setLevel("debug"); pg.debug("now shown");
    setLevel("error"); log.warn("hidden again");
    console.log(process.env.PGHERD_LOG_FORMAT);`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
  expect(r.status).toBe(0);
  expect(r.stdout.trim()).toBe("json"); // inherited by the watchdog the agent spawns
  const lines = r.stderr.trim().split("\n").map((l) => JSON.parse(l) as { level: string; message: string; fields: Record<string, unknown> });
  expect(lines.map((l) => l.message)).toEqual(["shown", "early logger follows", "now shown"]);
  expect(lines[0]!.fields).toEqual({ tag: "db1:pg", n: 1 });
  expect(lines.map((l) => l.level)).toEqual(["info", "warn", "debug"]);
});
