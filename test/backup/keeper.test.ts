// The primary's archive keeper runs in its monitoring round: nothing it asks of pgBackRest may hold
// that round (S18: the leader must notice its own server failing). Found by review: the schedule's
// `pgbackrest info` (up to 30 s, for ever on a hung hard-mounted NFS repository) was awaited there.
// A stand-in pgbackrest: stanza-create answers at once, info hangs.
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArchiveKeeper } from "../../src/backup/keeper.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { waitFor } from "../helpers/proc.ts";
import { PG_OS_USER } from "../helpers/pg.ts";

const root = mkdtempSync(join(tmpdir(), "pgherd-keeper-"));
chmodSync(root, 0o755);
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("a due backup's repository read runs beside the round: maintain() returns while pgbackrest info hangs", async () => {
  const fake = join(root, "pgbackrest");
  writeFileSync(fake, `#!/bin/sh\ncase "$1" in info) sleep 5 ;; esac\nexit 0\n`, { mode: 0o755 });
  const log = memoryLogger();
  {
    const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n"\nstate_dir = "${root}/state"\n` +
      `[postgres]\ndata_dir = "${root}/pgdata"\nos_user = "${PG_OS_USER}"\n[backup]\ntool = "pgbackrest"\nrepo_path = "${root}/repo"\nfull_every_hours = 1\n`, "test");
    const keeper = new ArchiveKeeper(cfg, log, undefined, null, Date.now, fake);
    await keeper.maintain(true, "7714652627403131537"); // starts stanza-create in the background
    await waitFor(() => log.lines.some((l) => l.includes("stanza c ready")), { timeoutMs: 10_000, what: "the stanza" });
    const t0 = performance.now();
    await keeper.maintain(true, "7714652627403131537"); // the schedule reads the repository: info hangs
    expect(performance.now() - t0).toBeLessThan(1000);
    await keeper.maintain(true, "7714652627403131537"); // still reading: not a second read
    expect(performance.now() - t0).toBeLessThan(1000);
  }
}, 30_000);
