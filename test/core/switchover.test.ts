import { expect, test } from "bun:test";
import type { PgReport } from "../../src/core/report.ts";
import { checkSwitchover, type Candidate } from "../../src/core/switchover.ts";

const rep = (over: Partial<PgReport>): PgReport => ({
  port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: true, position: { timeline: 1, lsn: "0/3000000" },
  receiveLsn: "0/3000000", replayLsn: "0/3000000", upstream: null, streaming: true, replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true, ...over,
});
const primary = rep({ inRecovery: false, streaming: false, position: { timeline: 1, lsn: "0/3000000" } });
const c = (name: string, over: Partial<PgReport> = {}, extra: Partial<Candidate> = {}): Candidate => ({ id: `id-${name}`, name, voter: true, witness: false, neverPromoted: false, report: rep(over), ...extra });
const base = { primary, paused: false, force: false, maxLagBytes: 1 << 20 };

test("picks the least lagging streaming standby", () => {
  const v = checkSwitchover({ ...base, candidates: [c("b", { replayLsn: "0/2000000" }), c("a")] });
  expect(v.ok && v.target.name).toBe("a");
});

test("refuses a lagging, absent, not-streaming or nofailover target, unless forced; one that can never be promoted even forced", () => {
  expect(checkSwitchover({ ...base, to: "b", candidates: [c("b", { replayLsn: "0/1000000" })] })).toMatchObject({ ok: false, reason: expect.stringContaining("lags") });
  expect(checkSwitchover({ ...base, to: "x", candidates: [c("b")] })).toMatchObject({ ok: false, reason: expect.stringContaining("no database member") });
  expect(checkSwitchover({ ...base, to: "b", candidates: [c("b", { streaming: false })] })).toMatchObject({ ok: false });
  expect(checkSwitchover({ ...base, to: "b", candidates: [c("b", {}, { neverPromoted: true })] })).toMatchObject({ ok: false });
  expect(checkSwitchover({ ...base, to: "b", force: true, candidates: [c("b", { replayLsn: "0/1000000" })] }).ok).toBe(true);
  expect(checkSwitchover({ ...base, to: "b", force: true, candidates: [c("b", {}, { neverPromoted: true })] })).toMatchObject({ ok: false, reason: expect.stringContaining("cannot be promoted") });
});

test("refuses, even forced, a target that runs as a primary (the leader itself, or a diverged former primary): review, a forced one stopped this primary and handed leadership to it", () => {
  for (const force of [false, true]) {
    const v = checkSwitchover({ ...base, to: "b", force, candidates: [c("b", { inRecovery: false, streaming: false })] });
    expect(v).toMatchObject({ ok: false, reason: expect.stringContaining("runs as a primary") });
  }
});

test("refuses while paused or without a running primary", () => {
  expect(checkSwitchover({ ...base, paused: true, candidates: [c("b")] })).toMatchObject({ ok: false, reason: expect.stringContaining("paused") });
  expect(checkSwitchover({ ...base, primary: null, candidates: [c("b")] })).toMatchObject({ ok: false });
});

test("refuses a target without a copy of every permanent slot, unless forced; a choice prefers one with copies", () => {
  const slots = { permanent: [{ name: "cdc", type: "logical" as const, lsn: "0/3000000" }, { name: "recv", type: "physical" as const, lsn: "0/3000000" }] };
  const withSlots = rep({ ...slots, inRecovery: false, streaming: false });
  const full = { permanentCopies: ["cdc", "recv"] };
  const s = { ...base, primary: withSlots };
  expect(checkSwitchover({ ...s, to: "b", candidates: [c("b", { permanentCopies: ["recv"] })] })).toMatchObject({ ok: false, reason: expect.stringContaining("no copy of permanent slot(s) cdc yet") });
  expect(checkSwitchover({ ...s, to: "b", candidates: [c("b")] })).toMatchObject({ ok: false, reason: expect.stringContaining("cdc, recv") });
  expect(checkSwitchover({ ...s, to: "b", candidates: [c("b", full)] }).ok).toBe(true);
  expect(checkSwitchover({ ...s, to: "b", force: true, candidates: [c("b")] }).ok).toBe(true);
  // Without a name: the standby with the copies, though another lags less; none with them: refused.
  const v = checkSwitchover({ ...s, candidates: [c("a"), c("b", { ...full, replayLsn: "0/2F00000" })] });
  expect(v.ok && v.target.name).toBe("b");
  expect(checkSwitchover({ ...s, candidates: [c("a", { permanentCopies: [] }), c("b", { permanentCopies: ["recv"] })] })).toMatchObject({ ok: false, reason: expect.stringContaining("b holds no copy of permanent slot(s) cdc yet") });
  // A standby that reports nothing about copies (no [[slots.permanent]] there, or an older pgherd) is told apart.
  expect(checkSwitchover({ ...s, to: "b", candidates: [c("b")] })).toMatchObject({ ok: false, reason: expect.stringContaining("reports no copies of permanent slots") });
  // A stopping leader's handover only prefers: a failover instead would create the slots anew as well.
  const h = checkSwitchover({ ...s, slotCopies: "prefer", candidates: [c("a")] });
  expect(h.ok && h.target.name).toBe("a");
  // A slot no standby can copy (invalidated; not a failover slot on ≥ 17) is not waited for.
  const lost = rep({ inRecovery: false, streaming: false, permanent: [{ ...slots.permanent[0]!, uncopyable: "lost" }, { ...slots.permanent[1]!, uncopyable: "not-failover" }] });
  expect(checkSwitchover({ ...base, primary: lost, to: "b", candidates: [c("b", { permanentCopies: [] })] }).ok).toBe(true);
  // Without permanent slots nothing changes.
  expect(checkSwitchover({ ...base, to: "b", candidates: [c("b")] }).ok).toBe(true);
});
