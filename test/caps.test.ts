// src/caps.ts: the argv of a child that must not inherit the agent's ambient capabilities, from an
// injected /proc/self/status text (test/security/ambient-caps.test.ts runs the real thing).
import { expect, test } from "bun:test";
import { ambientMask, SETPRIV, withoutAmbientCaps } from "../src/caps.ts";

const status = (amb: string) => `Name:\tpgherd\nCapInh:\t${amb}\nCapPrm:\t${amb}\nCapEff:\t${amb}\nCapBnd:\t000001ffffffffff\nCapAmb:\t${amb}\nNoNewPrivs:\t0\n`;
const ARGV = ["/usr/lib/postgresql/15/bin/pg_ctl", "start", "-D", "/var/lib/postgresql/15/main"] as const;

test("CapAmb is read as a hex mask; a status without the line (kernels before 4.3) holds none", () => {
  expect(ambientMask(status("0000000000003000"))).toBe(0x3000n);
  expect(ambientMask(status("0000000000000000"))).toBe(0n);
  expect(ambientMask("Name:\tx\nCapEff:\t0000000000003000\n")).toBe(0n);
});

test("no ambient capability: the argv unchanged (no setpriv exec)", () => {
  expect(withoutAmbientCaps(ARGV, status("0000000000000000"))).toEqual([...ARGV]);
});

test("ambient capabilities held: setpriv empties the inheritable and ambient sets, then execs the program", () => {
  expect(withoutAmbientCaps(ARGV, status("0000000000003000"))).toEqual([SETPRIV, "--inh-caps=-all", "--ambient-caps=-all", "--", ...ARGV]);
  // An argument that looks like an option stays the program's: it comes after "--".
  expect(withoutAmbientCaps(["/bin/echo", "--dump"], status("0000000000001000")).slice(3)).toEqual(["--", "/bin/echo", "--dump"]);
});

test("ambient capabilities held and setpriv missing: throws naming the capabilities and setpriv, never the bare argv", () => {
  expect(() => withoutAmbientCaps(ARGV, status("0000000000003000"), "/nonexistent/setpriv")).toThrow(
    /pg_ctl not started: this process holds ambient capabilities \(CapAmb 0000000000003000\).*\/nonexistent\/setpriv \(util-linux\), which drops them, is missing/,
  );
  expect(withoutAmbientCaps(ARGV, status("0000000000000000"), "/nonexistent/setpriv")).toEqual([...ARGV]);
});

test("the flags are ones this machine's setpriv takes", () => {
  const r = Bun.spawnSync(withoutAmbientCaps(["/bin/grep", "^CapAmb", "/proc/self/status"], status("0000000000003000")));
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toMatch(/^CapAmb:\s+0{16}\n$/);
});
