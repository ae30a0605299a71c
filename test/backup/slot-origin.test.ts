// Who made a permanent slot, across a failover (src/slots/permanent.ts, plan.ts, record.ts): a
// standby's copy of a slot the operator made by hand, once that standby is primary, is the
// operator's slot and is never dropped when it leaves [[slots.permanent]] (review: the standbys
// recorded every copy as pgherd's, and the new primary dropped it). A copy of a slot pgherd made
// still is. A fake server (queries answered by operation name, src/postgres/slots.ts), a real record.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PermanentSlot } from "../../src/config/schema-backup.ts";
import { memoryLogger } from "../../src/log.ts";
import type { Db } from "../../src/postgres/sql.ts";
import type { AnySlot } from "../../src/postgres/slots.ts";
import { PermanentSlots, type PermanentReport } from "../../src/slots/permanent.ts";

const recv: PermanentSlot = { name: "recv", type: "physical" };
const LSN = "0/3000060";

let dir: string;
/** Each node's slots, and the slots dropped (node/slot). */
let slots: Record<string, AnySlot[]>;
let dropped: string[];

const physical = (name: string): AnySlot => ({ name, type: "physical", plugin: null, database: null, active: false, lsn: LSN, restartLsn: LSN, walStatus: "reserved", safeWalSize: null, failover: null });

/** Node `node`'s agent with `want` configured; `primary` is what the primary's report says (a standby's view). */
function agent(node: string, want: PermanentSlot[], primary: PermanentReport[] | null = null) {
  const stateDir = join(dir, node);
  mkdirSync(stateDir, { recursive: true });
  const db: Db = {
    target: "fake",
    close: async () => {},
    query: async <T>(what: string): Promise<T> => {
      const mine = (slots[node] ??= []);
      if (what === "list slots (all types)") return { major: 15, slots: mine.map((s) => ({ ...s })) } as T;
      const ensure = /^ensure slot (\w+)$/.exec(what)?.[1];
      if (ensure) {
        if (!mine.some((s) => s.name === ensure)) mine.push(physical(ensure));
        return true as T;
      }
      const drop = /^drop slot (\w+)$/.exec(what)?.[1];
      if (drop) {
        slots[node] = mine.filter((s) => s.name !== drop);
        dropped.push(`${node}/${drop}`);
        return true as T;
      }
      throw new Error(`unexpected query ${what}`);
    },
  };
  return new PermanentSlots({
    cfg: { state_dir: stateDir, slots: { permanent: want }, postgres: { port: 5432, superuser: "postgres", os_user: "postgres" } },
    socketDir: dir,
    node: { dataDir: join(dir, "data") },
    log: memoryLogger(),
    localDb: () => db,
    primarySlots: () => primary,
    restartStandby: async () => {
      throw new Error("no restart expected");
    },
  });
}

const report = (madeBy?: "pgherd" | "operator"): PermanentReport[] => [{ name: "recv", type: "physical", lsn: LSN, restartLsn: LSN, ...(madeBy ? { madeBy } : {}) }];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-slot-origin-"));
  slots = {};
  dropped = [];
});
const names = (node: string) => (slots[node] ?? []).map((s) => s.name);
const record = (node: string) => JSON.parse(readFileSync(join(dir, node, "permanent-slots.json"), "utf8"));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("a standby's copy of a permanent slot, after its promotion", () => {
  test("of a slot the operator made by hand: kept when it leaves the config (the primary reports it as the operator's)", async () => {
    // n1, primary: recv made by hand, then configured.
    slots.n1 = [physical("recv")];
    const n1 = agent("n1", [recv]);
    await n1.maintain(true);

    // n2, standby, copies it.
    await agent("n2", [recv], n1.report).maintain(false);
    expect(names("n2")).toEqual(["recv"]);

    // Failover: n2 is primary.
    const n2 = agent("n2", [recv]);
    await n2.maintain(true);

    // The operator removes recv from the config: the slot the consumer follows stays, on n2 as on n1.
    await agent("n2", []).maintain(true);
    await agent("n2", []).maintain(true);
    await agent("n1", [], n2.report).maintain(false);
    expect(dropped).toEqual([]);
    expect(names("n2")).toEqual(["recv"]);

    // n2 a standby again: its copy goes (pgherd made it, and no longer moves it on); n1's own slot stays.
    await agent("n2", [], n1.report).maintain(false);
    expect(dropped).toEqual(["n2/recv"]);
    expect(names("n1")).toEqual(["recv"]);
  });

  test("the primary reports who made each permanent slot, and so does a standby promoted since", async () => {
    slots.n1 = [physical("recv")];
    const n1 = agent("n1", [recv]);
    await n1.maintain(true);
    expect(n1.report.map((p) => p.madeBy)).toEqual(["operator"]);
    await agent("n2", [recv], n1.report).maintain(false);
    expect(record("n2")).toEqual({ slots: [], operatorCopies: ["recv"] });
    const n2 = agent("n2", [recv]);
    await n2.maintain(true);
    expect(n2.report.map((p) => p.madeBy)).toEqual(["operator"]);
  });

  test("of a slot pgherd made: dropped when it leaves the config, as on the node that made it", async () => {
    const n1 = agent("n1", [recv]);
    await n1.maintain(true); // creates recv
    await n1.maintain(true); // reports it
    expect(n1.report.map((p) => p.madeBy)).toEqual(["pgherd"]);
    await agent("n2", [recv], n1.report).maintain(false);
    expect(record("n2")).toEqual({ slots: ["recv"] });
    await agent("n2", []).maintain(true);
    expect(dropped).toEqual(["n2/recv"]);
  });

  test("a primary of an earlier pgherd says nothing of the maker: the copy counts as the operator's, never dropped on a primary", async () => {
    await agent("n2", [recv], report()).maintain(false);
    expect(record("n2")).toEqual({ slots: [], operatorCopies: ["recv"] });
    await agent("n2", []).maintain(true);
    expect(dropped).toEqual([]);
    // Once the primary says pgherd made it, the record follows.
    await agent("n2", [recv], report("pgherd")).maintain(false);
    expect(record("n2")).toEqual({ slots: ["recv"] });
  });
});
