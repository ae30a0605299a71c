import { expect, test } from "bun:test";
import type { PgReport } from "../../src/core/report.ts";
import { checkSwitchover, type Candidate } from "../../src/core/switchover.ts";

const rep = (over: Partial<PgReport>): PgReport => ({
  port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: true, position: { timeline: 1, lsn: "0/3000000" },
  receiveLsn: "0/3000000", replayLsn: "0/3000000", upstream: null, streaming: true, replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true, ...over,
});
const primary = rep({ inRecovery: false, streaming: false, position: { timeline: 1, lsn: "0/3000000" } });
const c = (name: string, over: Partial<PgReport> = {}, extra: Partial<Candidate> = {}): Candidate => ({ id: `id-${name}`, name, voter: true, witness: false, nofailover: false, report: rep(over), ...extra });
const base = { primary, paused: false, force: false, maxLagBytes: 1 << 20 };

test("picks the least lagging streaming standby", () => {
  const v = checkSwitchover({ ...base, candidates: [c("b", { replayLsn: "0/2000000" }), c("a")] });
  expect(v.ok && v.target.name).toBe("a");
});

test("refuses a lagging, absent, not-streaming or nofailover target, unless forced", () => {
  expect(checkSwitchover({ ...base, to: "b", candidates: [c("b", { replayLsn: "0/1000000" })] })).toMatchObject({ ok: false, reason: expect.stringContaining("lags") });
  expect(checkSwitchover({ ...base, to: "x", candidates: [c("b")] })).toMatchObject({ ok: false, reason: expect.stringContaining("no database member") });
  expect(checkSwitchover({ ...base, to: "b", candidates: [c("b", { streaming: false })] })).toMatchObject({ ok: false });
  expect(checkSwitchover({ ...base, to: "b", candidates: [c("b", {}, { nofailover: true })] })).toMatchObject({ ok: false });
  expect(checkSwitchover({ ...base, to: "b", force: true, candidates: [c("b", { replayLsn: "0/1000000" })] }).ok).toBe(true);
});

test("refuses while paused or without a running primary", () => {
  expect(checkSwitchover({ ...base, paused: true, candidates: [c("b")] })).toMatchObject({ ok: false, reason: expect.stringContaining("paused") });
  expect(checkSwitchover({ ...base, primary: null, candidates: [c("b")] })).toMatchObject({ ok: false });
});
