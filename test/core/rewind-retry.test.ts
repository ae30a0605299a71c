// A pg_rewind that could not connect and wrote nothing is tried again for a while; anything else
// leads to a fresh clone (core/rewind-retry.ts; src/agent/pg/rebuild.ts carries it out).
import { expect, test } from "bun:test";
import { afterRewindFailure, connectEpisode, REWIND_CONNECT_RETRY_MS, REWIND_RETRY_FIRST_MS, REWIND_RETRY_MAX_MS, rewindDue } from "../../src/core/rewind-retry.ts";
import { rewindCouldNotConnect } from "../../src/postgres/rewind.ts";

test("could not connect, nothing written: tried again until REWIND_CONNECT_RETRY_MS, then a clone", () => {
  const x = { touched: false, couldNotConnect: true, failingForMs: 0 };
  expect(afterRewindFailure(x)).toBe("retry");
  expect(afterRewindFailure({ ...x, failingForMs: REWIND_CONNECT_RETRY_MS - 1 })).toBe("retry");
  expect(afterRewindFailure({ ...x, failingForMs: REWIND_CONNECT_RETRY_MS })).toBe("clone");
  expect(afterRewindFailure({ ...x, touched: true })).toBe("clone"); // it began to write: only a clone
  expect(afterRewindFailure({ ...x, couldNotConnect: false })).toBe("clone"); // a refusal once connected
});

test("an episode of connection failures goes on while they follow each other; one much later starts a new one", () => {
  const e = connectEpisode(null, "p:5432", 1000);
  expect(e).toEqual({ from: "p:5432", since: 1000, last: 1000, failures: 1 });
  expect(connectEpisode(e, "p:5432", 1500)).toEqual({ from: "p:5432", since: 1000, last: 1500, failures: 2 });
  const later = 1500 + REWIND_CONNECT_RETRY_MS + 1;
  expect(connectEpisode({ from: "p:5432", since: 1000, last: 1500, failures: 2 }, "p:5432", later)).toEqual({ from: "p:5432", since: later, last: later, failures: 1 });
  expect(connectEpisode({ from: "p:5432", since: 1000, last: 1500, failures: 2 }, "q:5432", 1600)).toEqual({ from: "q:5432", since: 1600, last: 1600, failures: 1 }); // another primary
});

test("attempts of an episode back off: first retry after REWIND_RETRY_FIRST_MS, doubling up to REWIND_RETRY_MAX_MS", () => {
  expect(rewindDue(null, "p:5432", 0)).toBe(true);
  let e = connectEpisode(null, "p:5432", 1000);
  expect(rewindDue(e, "p:5432", 1000 + REWIND_RETRY_FIRST_MS - 1)).toBe(false);
  expect(rewindDue(e, "p:5432", 1000 + REWIND_RETRY_FIRST_MS)).toBe(true);
  expect(rewindDue(e, "q:5432", 1001)).toBe(true); // another primary: at once
  e = connectEpisode(e, "p:5432", 2000);
  expect(rewindDue(e, "p:5432", 2000 + 2 * REWIND_RETRY_FIRST_MS - 1)).toBe(false);
  expect(rewindDue(e, "p:5432", 2000 + 2 * REWIND_RETRY_FIRST_MS)).toBe(true);
  for (let i = 0; i < 10; i++) e = connectEpisode(e, "p:5432", e.last + REWIND_RETRY_MAX_MS);
  expect(rewindDue(e, "p:5432", e.last + REWIND_RETRY_MAX_MS - 1)).toBe(false);
  expect(rewindDue(e, "p:5432", e.last + REWIND_RETRY_MAX_MS)).toBe(true); // capped
  // The backoff does not stretch the episode: 1 s then 10 capped waits span 41 s, past REWIND_CONNECT_RETRY_MS: a clone.
  expect(e.last - e.since).toBe(1000 + 10 * REWIND_RETRY_MAX_MS);
  expect(afterRewindFailure({ touched: false, couldNotConnect: true, failingForMs: e.last - e.since })).toBe("clone");
});

test("pg_rewind's connection failures are told from its other errors", () => {
  // the new primary had not reloaded its pg_hba.conf with this node yet (seen in CI on a real cluster)
  expect(rewindCouldNotConnect('pg_rewind: error: connection to server at "10.200.107.3", port 5432 failed: FATAL:  no pg_hba.conf entry for host "10.200.107.1", user "pgherd_repl", database "postgres", SSL encryption')).toBe(true);
  expect(rewindCouldNotConnect('pg_rewind: error: connection to server at "127.0.0.1", port 5999 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?')).toBe(true);
  expect(rewindCouldNotConnect("pg_rewind: error: could not connect to server: Connection refused")).toBe(true); // libpq before 14
  expect(rewindCouldNotConnect('pg_rewind: fatal: connection to server at "10.0.0.3", port 5432 failed: Connection refused')).toBe(true); // pg_rewind of 13 and 14
  expect(rewindCouldNotConnect('pg_rewind: error: connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: No such file or directory')).toBe(true);
  expect(rewindCouldNotConnect("pg_rewind: error: target server needs to use either data checksums or \"wal_log_hints = on\"")).toBe(false);
  expect(rewindCouldNotConnect('pg_rewind: need to copy 67 MB\npg_rewind: error: could not fetch remote file "base/5/16384": server closed the connection unexpectedly')).toBe(false);
});
