// Which permanent slots a node creates and drops (src/slots/plan.ts), and the record of the ones
// pgherd made (src/slots/record.ts) on a real file.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PermanentSlot } from "../../src/config/schema-backup.ts";
import { heldCopies, planPermanentSlots, type Made, type NodeSlot, type SlotPlanInput } from "../../src/slots/plan.ts";
import { SlotRecord } from "../../src/slots/record.ts";
import { slotList } from "../../src/postgres/probe.ts";

const cdc: PermanentSlot = { name: "cdc", type: "logical", plugin: "pgoutput", database: "app" };
const recv: PermanentSlot = { name: "recv", type: "physical" };
const slot = (name: string, o: Partial<NodeSlot> = {}): NodeSlot => ({ name, type: "physical", plugin: null, database: null, active: false, ...o });
const logical = (name: string, o: Partial<NodeSlot> = {}) => slot(name, { type: "logical", plugin: "pgoutput", database: "app", ...o });

const plan = (o: Partial<SlotPlanInput>) => planPermanentSlots({ want: [], have: [], managed: new Map(), primary: true, serverSync: false, ...o });
/** A record (or a primary's report) naming slots pgherd made. */
const made = (names: string[], by: Made = "pgherd") => new Map(names.map((n) => [n, by] as const));

describe("heldCopies", () => {
  test("a standby holds a copy of a configured slot its server lists with the configured type", () => {
    expect(heldCopies([recv, cdc], [{ name: "recv", type: "physical" }, { name: "cdc", type: "logical" }, { name: "other", type: "physical" }])).toEqual(["cdc", "recv"]);
    expect(heldCopies([recv, cdc], [{ name: "cdc", type: "physical" }])).toEqual([]);
    expect(heldCopies([], [{ name: "recv", type: "physical" }])).toEqual([]);
    // Invalidated by PostgreSQL (wal_status lost): not held (review: a switchover to this standby lost the slot).
    expect(heldCopies([recv, cdc], [{ name: "recv", type: "physical" }, { name: "cdc", type: "logical", lost: true }])).toEqual(["recv"]);
  });
  test("the probe's slot list: an item of another form is left out, not a failed probe", () => {
    expect(slotList("logical:cdc,physical:pgherd_ab12")).toEqual([{ name: "cdc", type: "logical" }, { name: "pgherd_ab12", type: "physical" }]);
    expect(slotList("other:x,logical:,physical:recv")).toEqual([{ name: "recv", type: "physical" }]);
    expect(slotList("logical:cdc:lost,physical:recv")).toEqual([{ name: "cdc", type: "logical", lost: true }, { name: "recv", type: "physical" }]);
    expect(slotList(null)).toEqual([]);
  });
});

describe("planPermanentSlots", () => {
  test("primary: creates what is configured and missing; a configured name taken by another kind of slot is a conflict, not touched", () => {
    const p = plan({ want: [cdc, recv], have: [slot("cdc")] });
    expect(p.create).toEqual([recv]);
    expect(p.conflict).toEqual([cdc]);
    expect(p.drop).toEqual([]);
    expect(plan({ want: [cdc], have: [logical("cdc", { plugin: "wal2json" })] }).conflict).toEqual([cdc]);
    expect(plan({ want: [cdc], have: [logical("cdc")] })).toMatchObject({ create: [], conflict: [] });
  });

  test("a slot pgherd made and the config no longer lists is dropped, on a primary and on a standby", () => {
    for (const primary of [true, false]) {
      const p = plan({ primary, want: [cdc], have: [logical("cdc"), slot("recv")], managed: made(["cdc", "recv"]) });
      expect(p.drop).toEqual(["recv"]);
      expect(p.create).toEqual([]);
    }
  });

  test("never dropped: an operator's slot (not in the record), pgherd's own standby slots, a configured slot", () => {
    const p = plan({ want: [recv], have: [slot("handmade"), slot("pgherd_n1"), slot("recv")], managed: made(["recv", "pgherd_n1"]) });
    expect(p).toMatchObject({ drop: [], busy: [], forget: [] });
    // The record does not matter for a name that is configured again.
    expect(plan({ want: [], have: [slot("handmade")] }).drop).toEqual([]);
  });

  test("a removed slot a consumer holds is busy (retried), not dropped; a recorded name with no slot is forgotten", () => {
    const p = plan({ have: [logical("cdc", { active: true })], managed: made(["cdc", "old"]) });
    expect(p.busy).toEqual(["cdc"]);
    expect(p.drop).toEqual([]);
    expect(p.forget).toEqual(["old"]);
  });

  test("standby whose server synchronizes failover slots (PostgreSQL 17+): the server's logical copies are recorded with who made the primary's slot, and left for the server to drop", () => {
    const p = plan({ primary: false, serverSync: true, want: [cdc, recv], have: [logical("cdc"), logical("gone"), slot("old")], managed: made(["gone", "old"]), origin: made(["cdc"], "operator") });
    expect(p.adopt).toEqual([{ name: "cdc", made: "operator" }]);
    expect(p.drop).toEqual(["old"]);
    expect(p.create).toEqual([]);
    // Not before the primary says who made it (no primary, or one of an earlier pgherd): unrecorded, it is never dropped.
    expect(plan({ primary: false, serverSync: true, want: [cdc], have: [logical("cdc")] }).adopt).toEqual([]);
    // A primary never adopts: a slot it did not create stays the operator's.
    expect(plan({ want: [cdc], have: [logical("cdc")], origin: made(["cdc"]) }).adopt).toEqual([]);
  });

  test("a copy of a slot the operator made: dropped with its config entry on a standby, never once its node is primary (review: the new primary dropped the operator's slot)", () => {
    const copies = made(["cdc", "recv"], "operator");
    expect(plan({ primary: false, have: [logical("cdc"), slot("recv")], managed: copies }).drop).toEqual(["cdc", "recv"]);
    // Promoted: the copies are the operator's slots now, kept like the one on the node it was made on.
    expect(plan({ primary: true, have: [logical("cdc"), slot("recv")], managed: copies })).toMatchObject({ drop: [], busy: [], forget: [] });
    // A copy of a slot pgherd made is pgherd's slot after a promotion: dropped.
    expect(plan({ primary: true, have: [logical("cdc"), slot("recv")], managed: made(["cdc", "recv"]) }).drop).toEqual(["cdc", "recv"]);
    // Gone: forgotten, whoever made it.
    expect(plan({ primary: true, managed: copies }).forget).toEqual(["cdc", "recv"]);
  });

  test("a standby's recorded copy follows who the primary reports made its slot; a slot not in the record is left alone", () => {
    const have = [logical("cdc"), slot("recv"), slot("handmade")];
    const want = [cdc, recv, { name: "handmade", type: "physical" } as PermanentSlot];
    // Recorded as pgherd's (an earlier pgherd recorded every copy so), reported as the operator's: recorded as the operator's; and back.
    expect(plan({ primary: false, want, have, managed: made(["cdc", "recv"]), origin: made(["cdc", "recv", "handmade"], "operator") }).adopt)
      .toEqual([{ name: "cdc", made: "operator" }, { name: "recv", made: "operator" }]);
    expect(plan({ primary: false, want, have, managed: made(["recv"], "operator"), origin: made(["recv"]) }).adopt).toEqual([{ name: "recv", made: "pgherd" }]);
    // Agreeing, not reported (no primary, an earlier pgherd's report) or not held with the configured type: unchanged.
    expect(plan({ primary: false, want, have, managed: made(["recv"]), origin: made(["recv"]) }).adopt).toEqual([]);
    expect(plan({ primary: false, want, have, managed: made(["recv"]) }).adopt).toEqual([]);
    expect(plan({ primary: false, want, have: [slot("cdc")], managed: made(["cdc"]), origin: made(["cdc"], "operator") }).adopt).toEqual([]);
  });
});

describe("SlotRecord", () => {
  test("persists names across instances, 0600; a corrupt file is an error, never an empty record", async () => {
    const dir = mkdtempSync(join(tmpdir(), "slot-record-"));
    try {
      const r = new SlotRecord(dir);
      expect([...(await r.load())]).toEqual([]);
      await r.set("recv", "pgherd");
      await r.set("cdc", "pgherd");
      await r.set("cdc", "pgherd");
      expect(JSON.parse(readFileSync(r.file, "utf8"))).toEqual({ slots: ["cdc", "recv"] });
      expect(statSync(r.file).mode & 0o777).toBe(0o600);
      await r.set("copy", "operator");
      await r.set("recv", "operator");
      expect(JSON.parse(readFileSync(r.file, "utf8"))).toEqual({ slots: ["cdc"], operatorCopies: ["copy", "recv"] });
      await r.remove(["recv", "copy", "nope"]);
      expect([...(await new SlotRecord(dir).load())]).toEqual([["cdc", "pgherd"]]);
      // A name in both lists (edited by hand) is the operator's: nothing is dropped on a primary for it.
      writeFileSync(r.file, JSON.stringify({ slots: ["cdc", "recv"], operatorCopies: ["cdc"] }));
      expect([...(await new SlotRecord(dir).load())].sort()).toEqual([["cdc", "operator"], ["recv", "pgherd"]]);
      writeFileSync(r.file, "{");
      await expect(new SlotRecord(dir).load()).rejects.toThrow(/corrupt state file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
