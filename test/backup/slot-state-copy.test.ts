// A standby's copy of a permanent logical slot (PostgreSQL < 17, src/slots/permanent.ts): the
// primary's pg_replslot/<name>/state written into the stopped standby. PostgreSQL's start PANICs on
// a slot directory whose state file is missing or short ("could not read file … read N of M"), so a
// write cut short (disk full, the agent killed) must never leave pg_replslot/<name> behind; the
// server removes a pg_replslot/<name>.tmp at its start, as it does for its own slots.
import { afterEach, beforeEach, describe, expect, mock, test } from "bun:test";
import * as realFs from "node:fs/promises";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import type { Db } from "../../src/postgres/sql.ts";
import { memoryLogger } from "../../src/log.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";

// Disk full in the middle of a slot's state file: half the bytes land, then ENOSPC.
let failStateWrites = false;
const realOpen = realFs.open;
mock.module("node:fs/promises", () => ({
  ...realFs,
  open: async (...args: Parameters<typeof realFs.open>) => {
    const fh = await realOpen(...args);
    if (failStateWrites && String(args[0]).endsWith("/state")) {
      fh.writeFile = async (data: unknown) => {
        const b = Buffer.from(data as Uint8Array);
        await fh.write(b.subarray(0, b.length >> 1));
        throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      };
    }
    return fh;
  },
}));
const { PermanentSlots } = await import("../../src/slots/permanent.ts");

const ROOT = process.getuid?.() === 0;
const OS_USER = ROOT ? "postgres" : userInfo().username;
const osUser = await lookupOsUser(OS_USER);
const SEG = "000000010000000000000001";
const STATE = Buffer.alloc(200, 7);

let dir: string;
let data: string;
let restarts = 0;

function keeper() {
  const db: Db = {
    target: "fake",
    close: async () => {},
    // Answers by operation name (src/postgres/slots.ts): a PostgreSQL 15 standby with no slot yet, WAL from segment 1.
    query: async <T>(what: string): Promise<T> => {
      if (what === "list slots (all types)") return { major: 15, slots: [] } as T;
      if (what === "oldest WAL segment") return [{ name: SEG, size: "16777216" }] as T;
      throw new Error(`unexpected query ${what}`);
    },
  };
  return new PermanentSlots({
    cfg: {
      state_dir: join(dir, "state"),
      slots: { permanent: [{ name: "cdc", type: "logical", plugin: "pgoutput", database: "app" }] },
      postgres: { port: 5432, superuser: "postgres", os_user: OS_USER },
    },
    socketDir: dir,
    node: { dataDir: data },
    log: memoryLogger(),
    localDb: () => db,
    primarySlots: () => [{ name: "cdc", type: "logical", lsn: "0/1000100", restartLsn: "0/1000028", state: STATE.toString("base64"), madeBy: "pgherd" }],
    restartStandby: async (whileStopped) => {
      restarts++;
      await whileStopped?.();
    },
  });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-slot-copy-"));
  data = join(dir, "data");
  mkdirSync(join(data, "pg_replslot"), { recursive: true, mode: 0o700 });
  mkdirSync(join(data, "pg_wal"), { recursive: true, mode: 0o700 });
  mkdirSync(join(dir, "state"), { mode: 0o700 });
  writeFileSync(join(data, "pg_wal", SEG), "");
  // The server's directories are the OS user's (the agent may run as root).
  if (ROOT) for (const d of [data, join(data, "pg_replslot"), join(data, "pg_wal")]) chownSync(d, osUser.uid, osUser.gid);
  failStateWrites = false;
  restarts = 0;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("a logical slot's copy written into a stopped standby", () => {
  test("a write cut short leaves no pg_replslot/<name> for the server's start to PANIC on", async () => {
    failStateWrites = true;
    await expect(keeper().maintain(false)).rejects.toThrow("ENOSPC");
    expect(restarts).toBe(1);
    // Not there at all: the server starts, and the next round copies again.
    expect(readdirSync(join(data, "pg_replslot")).filter((n) => !n.endsWith(".tmp"))).toEqual([]);
    failStateWrites = false;
    await keeper().maintain(false);
    expect(readFileSync(join(data, "pg_replslot", "cdc", "state"))).toEqual(STATE);
  });

  test("written whole, 0600, in a 0700 directory; a .tmp left by an earlier crash is replaced, none is left", async () => {
    mkdirSync(join(data, "pg_replslot", "cdc.tmp"), { mode: 0o700 });
    writeFileSync(join(data, "pg_replslot", "cdc.tmp", "state"), "torn");
    await keeper().maintain(false);
    expect(readFileSync(join(data, "pg_replslot", "cdc", "state"))).toEqual(STATE);
    expect(statSync(join(data, "pg_replslot", "cdc", "state")).mode & 0o777).toBe(0o600);
    expect(statSync(join(data, "pg_replslot", "cdc")).mode & 0o777).toBe(0o700);
    expect(statSync(join(data, "pg_replslot", "cdc", "state")).uid).toBe(osUser.uid);
    expect(existsSync(join(data, "pg_replslot", "cdc.tmp"))).toBe(false);
    expect(JSON.parse(readFileSync(join(dir, "state", "permanent-slots.json"), "utf8")).slots).toEqual(["cdc"]);
  });
});
