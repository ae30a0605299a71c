// What the agent does with its running pgbackrest server when the certificate on disk may not be the
// one it serves: one test per rule (tls-server-step.ts). Found by review: a SIGHUP was sent once a
// second had passed since the start (pgBackRest may not handle it yet: it then ends), and the new
// certificate was taken as served without looking.
import { describe, expect, test } from "bun:test";
import { READY_MS, READY_TRIES, RELOAD_TRIES, serverStep, serverVersionProblem, type ServerView } from "../../src/backup/tls-server-step.ts";

const OLD = "ca+old";
const NEW = "ca+new";
/** Serving its first files, the new ones on disk, not checked yet. */
const base: ServerView = { files: NEW, serving: OLD, ready: false, checking: false, reloadedFor: null, onDisk: "FP-NEW", presented: null, tries: 0, unready: 0, upMs: 0 };

describe("serverStep", () => {
  test("the files on disk are the ones it serves: nothing", () => {
    expect(serverStep({ ...base, files: OLD, ready: true })).toEqual({ do: "nothing" });
    expect(serverStep({ ...base, files: OLD, ready: false })).toEqual({ do: "nothing" });
  });

  test("new files, no handshake with it since its start: a handshake first, no SIGHUP", () => {
    expect(serverStep(base)).toEqual({ do: "check" });
  });

  test("new files, no handshake with it has succeeded for READY_MS since its start (READY_TRIES failed): restarted, not left on the old certificate for good", () => {
    expect(serverStep({ ...base, unready: 50, upMs: READY_MS - 1 })).toEqual({ do: "check" }); // a slow start
    expect(serverStep({ ...base, unready: READY_TRIES - 1, upMs: READY_MS })).toEqual({ do: "check" });
    expect(serverStep({ ...base, unready: READY_TRIES, upMs: READY_MS })).toMatchObject({ do: "restart", why: expect.stringContaining("no TLS handshake") });
    expect(serverStep({ ...base, files: OLD, unready: READY_TRIES, upMs: READY_MS })).toEqual({ do: "nothing" }); // nothing to take: no restart
  });

  test("new files, a handshake succeeded since its start: SIGHUP", () => {
    expect(serverStep({ ...base, ready: true })).toEqual({ do: "reload" });
  });

  test("a handshake under way: nothing until it ends", () => {
    expect(serverStep({ ...base, checking: true })).toEqual({ do: "nothing" });
    expect(serverStep({ ...base, ready: true, reloadedFor: NEW, checking: true, tries: RELOAD_TRIES })).toEqual({ do: "nothing" });
  });

  test("after the SIGHUP it presents the certificate on disk: served", () => {
    expect(serverStep({ ...base, ready: true, reloadedFor: NEW, presented: "FP-NEW", tries: 1 })).toEqual({ do: "reloaded" });
  });

  test(`after the SIGHUP, not seen yet and fewer than ${RELOAD_TRIES} handshakes: another handshake`, () => {
    expect(serverStep({ ...base, ready: true, reloadedFor: NEW })).toEqual({ do: "check" });
    expect(serverStep({ ...base, ready: true, reloadedFor: NEW, presented: "FP-OLD", tries: RELOAD_TRIES - 1 })).toEqual({ do: "check" });
  });

  test(`after the SIGHUP, ${RELOAD_TRIES} handshakes did not show it: restart, saying why`, () => {
    expect(serverStep({ ...base, ready: true, reloadedFor: NEW, presented: "FP-OLD", tries: RELOAD_TRIES }))
      .toEqual({ do: "restart", why: `${RELOAD_TRIES} handshakes since its SIGHUP did not show the new certificate (it still presents another)` });
    expect(serverStep({ ...base, ready: true, reloadedFor: NEW, presented: null, tries: RELOAD_TRIES }))
      .toEqual({ do: "restart", why: `${RELOAD_TRIES} handshakes since its SIGHUP did not show the new certificate (the last one failed)` });
  });

  test("renewed again since the SIGHUP: SIGHUP again", () => {
    expect(serverStep({ ...base, files: "ca+newer", ready: true, reloadedFor: NEW, tries: 2 })).toEqual({ do: "reload" });
  });
});

describe("serverVersionProblem (pgbackrest version)", () => {
  test("2.37 and later: none", () => {
    expect(serverVersionProblem("pgBackRest 2.37\n")).toBeNull();
    expect(serverVersionProblem("pgBackRest 2.45\n")).toBeNull();
    expect(serverVersionProblem("pgBackRest 3.0\n")).toBeNull();
    expect(serverVersionProblem("pgBackRest 2.55.1\n")).toBeNull();
    expect(serverVersionProblem("pgBackRest 2.54dev\n")).toBeNull();
  });

  test("before 2.37: no server, said once with what to do", () => {
    expect(serverVersionProblem("pgBackRest 2.36\n")).toContain("pgBackRest 2.36 has no `pgbackrest server` (2.37 and later): not started");
  });

  test("output it cannot read: none (the start tells)", () => {
    expect(serverVersionProblem("")).toBeNull();
  });
});
