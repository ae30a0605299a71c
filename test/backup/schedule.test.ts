// When the primary takes a scheduled backup (src/backup/schedule.ts) and what [backup] accepts for it.
import { describe, expect, test } from "bun:test";
import { dueBackup, lastBackups } from "../../src/backup/schedule.ts";
import { ConfigError, parseConfig } from "../../src/config/load.ts";

const H = 3600_000;
const T = Date.parse("2026-12-01T12:00:00Z");

describe("dueBackup", () => {
  const at = (now: number, lastFullMs: number, lastAnyMs: number, full = 24, incr = 1) => dueBackup({ now, fullEveryMs: full * H, incrEveryMs: incr * H, lastFullMs, lastAnyMs });

  test("no backup yet: a full one at once (also with only incr_every_hours: pgBackRest needs a full one first)", () => {
    expect(at(T, 0, 0)).toBe("full");
    expect(at(T, 0, 0, 0, 1)).toBe("full");
  });

  test("a full one when the newest full is as old as full_every_hours, an incremental one when the newest backup is as old as incr_every_hours", () => {
    expect(at(T, T - 24 * H, T - 10)).toBe("full");
    expect(at(T, T - 24 * H + 1, T - 10)).toBeNull();
    expect(at(T, T - 5 * H, T - H)).toBe("incr");
    expect(at(T, T - 5 * H, T - H + 1)).toBeNull();
  });

  test("a backup another primary just took (the repository says so) is not taken again", () => {
    expect(at(T, T - 25 * H, T - 25 * H)).toBe("full");
    expect(at(T, T - 1000, T - 1000)).toBeNull();
  });

  test("no schedule: nothing ever", () => {
    expect(at(T, 0, 0, 0, 0)).toBeNull();
  });

  test("lastBackups reads the newest stop times (pgBackRest seconds) from the list", () => {
    expect(lastBackups([])).toEqual({ lastFullMs: 0, lastAnyMs: 0 });
    expect(lastBackups([{ type: "full", stop: 100 }, { type: "incr", stop: 200 }, { type: "full", stop: 150 }, { type: "diff", stop: 120 }])).toEqual({ lastFullMs: 150_000, lastAnyMs: 200_000 });
  });
});

describe("[backup] schedule keys", () => {
  const BASE = `cluster = "main"\nsecret = "${"s".repeat(40)}"\n[backup]\ntool = "pgbackrest"\n`;
  const errors = (text: string) => {
    try {
      parseConfig(BASE + text, "pgherd.toml");
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as ConfigError).lines.join("\n");
    }
    return "";
  };

  test("hours, fractions allowed down to 0.001 (3.6 s); 0 = none; anything else refused naming the key", () => {
    expect(parseConfig(BASE + "full_every_hours = 168\nincr_every_hours = 0.5\n", "x").backup).toMatchObject({ full_every_hours: 168, incr_every_hours: 0.5 });
    expect(parseConfig(BASE + "incr_every_hours = 0.001\n", "x").backup.incr_every_hours).toBe(0.001);
    expect(errors("incr_every_hours = 0.0009\n")).toContain("backup.incr_every_hours must be 0 (no schedule) or at least 0.001 (3.6 s)");
    expect(errors("full_every_hours = -1\n")).toContain("backup.full_every_hours must be 0 or more");
    expect(errors('full_every_hours = "daily"\n')).toContain("backup.full_every_hours must be a number of hours");
  });
});
