// Client access seen from a client host: three namespace hosts run pgherd, a fourth runs none and
// only psql (passwords from a 0600 passfile in PGPASSFILE). Before any [[access]] rule the client
// is refused by every node's pg_hba.conf; `pgherd config set access=…` (through the leader) lets it
// in on every node, the standbys cloned before the rule existed included. A failover follows (the
// primary's host cut off); while the old primary is away a rule for a second role is added, and
// once healed and rewound it lets that role in too, like every other node; the string
// `pgherd dsn --primary` printed before the failover reaches the new primary. Removing the rules
// locks the client out of every node again. Each step is asserted from the client's side: psql's
// exit code and what the server answered (which node, primary or standby, or pg_hba's refusal).
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY } from "../../scripts/build.ts";
import type { ClusterNode, PgCluster } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import type { Host } from "../helpers/lab.ts";
import { pgBins } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { faultRound, logMark, pgherd, rejoinPath, startFailoverCluster, waitReplicating } from "../helpers/writer.ts";

const PASSWORD = "client-host-password-for-access-e2e";
const SQL = "select pg_is_in_recovery(), host(inet_server_addr())";

interface Fx { c: PgCluster; client: Host; passfile: string }

/** psql on the client host (no pgherd there), with only PATH and PGPASSFILE in its environment. */
async function psql(fx: Fx, uri: string): Promise<{ ok: boolean; out: string; err: string }> {
  const r = await fx.client.exec(["env", "-i", `PATH=${process.env.PATH ?? "/usr/bin:/bin"}`, `PGPASSFILE=${fx.passfile}`, join(pgBins!.dir, "psql"), uri, "-XAtc", SQL], { timeoutMs: 20_000 });
  return { ok: r.code === 0, out: r.stdout.trim(), err: r.stderr.trim() };
}

const direct = (n: ClusterNode, user: string) => `postgresql://${user}@${n.host.ip}:5432/postgres?connect_timeout=3`;

/** The client is in on `n`: psql exits 0 and the answer comes from `n` itself, as primary or standby. */
async function loggedIn(fx: Fx, n: ClusterNode, standby: boolean, user = "app"): Promise<void> {
  const r = await waitFor(async () => {
    const l = await psql(fx, direct(n, user));
    if (!l.ok) throw new Error(l.err); // the reason waitFor reports on timeout
    return l;
  }, { timeoutMs: 20_000, intervalMs: 200, what: `${user} from ${fx.client.ip} to log in on ${n.name}` });
  expect(r.out).toBe(`${standby ? "t" : "f"}|${n.host.ip}`);
}

/** The client is refused by `n`'s pg_hba.conf, by name (not a wrong password, not a timeout). */
async function refused(fx: Fx, n: ClusterNode, user = "app"): Promise<void> {
  const hba = `no pg_hba.conf entry for host "${fx.client.ip}", user "${user}", database "postgres"`;
  await waitFor(async () => {
    const l = await psql(fx, direct(n, user));
    if (l.ok || !l.err.includes(hba)) throw new Error(l.ok ? `logged in: ${l.out}` : l.err);
    return true;
  }, { timeoutMs: 20_000, intervalMs: 200, what: `${n.name} to refuse ${user} from ${fx.client.ip} by pg_hba.conf` });
}

async function setAccess(n: ClusterNode, rules: unknown[]): Promise<void> {
  const r = await pgherd(n, ["config", "set", `access=${JSON.stringify(rules)}`]);
  console.log(`config set access on ${n.name}: exit ${r.code}: ${r.text}`);
  expect(r.code).toBe(0);
  expect(r.text).toContain("access");
}

describeCluster("client access from a fourth host", {
  start: async () => {
    const x = await startFailoverCluster("access-client", "acccl");
    try {
      const client = await x.c.addBareHost();
      return { ...x, client, passfile: join(x.c.scratch, "client.pgpass") };
    } catch (e) {
      await x.c.destroy().catch(() => {});
      throw e;
    }
  },
  ready: async (fx) => {
    writeFileSync(fx.passfile, `*:*:*:*:${PASSWORD}\n`, { mode: 0o600 });
    // The standbys were cloned at start, long before any rule; wait for version 1 of the cluster's document.
    for (const n of fx.c.nodes) {
      await waitFor(async () => {
        const r = await pgherd(n, ["config", "show", "--json"]);
        return r.code === 0 && ((JSON.parse(r.stdout) as { dynamic: { cluster: { version: number } | null } }).dynamic.cluster?.version ?? 0) >= 1;
      }, { timeoutMs: 30_000, intervalMs: 250, what: `${n.name} to store the cluster configuration` });
    }
  },
  beforeDestroy: async ({ c }) => { for (const h of c?.lab.hosts ?? []) await h.heal().catch(() => {}); },
  startMs: 180_000,
}, (fx) => {
  test("refused everywhere without a rule; in everywhere with one; after a failover too (the rewound node included, dsn --primary follows); locked out again without it", () => fx.c.diagnose(async () => {
    const { c } = fx;
    const h = await waitReplicating(c, 60_000);
    expect(c.nodes.map((n) => n.host.ip)).not.toContain(fx.client.ip);
    const rule = (user: string, address: string) => ({ database: "postgres", user, address });

    // (1) Passwords, but no rule: every node's pg_hba.conf refuses the client host.
    // `late` is let in only by a rule set while the old primary is cut off (step 3).
    for (const role of ["app", "late"]) {
      const pw = await h.primary.host.exec([BINARY, "passwd", role, "--create", "--config", h.primary.configPath], { input: `${PASSWORD}\n` });
      expect(`${pw.stdout}${pw.stderr}`).toContain(`created role ${role}`);
    }
    for (const n of c.nodes) await refused(fx, n);

    // (2) The rule for the client's address (/32), set on a standby's host (forwarded to the leader):
    // in on the primary and on both standbys, which were cloned before the rule existed.
    await setAccess(h.standbys[0]!, [rule("app", `${fx.client.ip}/32`)]);
    await loggedIn(fx, h.primary, false);
    for (const s of h.standbys) await loggedIn(fx, s, true);
    for (const n of c.nodes) await refused(fx, n, "late");
    // The string an application would use, printed on a cluster host before any failover.
    const d = await pgherd(h.standbys[1]!, ["dsn", "--primary", "--user", "app", "--dbname", "postgres"]);
    expect(d.code).toBe(0);
    const dsn = d.stdout.trim();
    expect(dsn).toContain("target_session_attrs=read-write");
    expect((await psql(fx, dsn)).out).toBe(`f|${h.primary.host.ip}`);

    // (3) Failover: the primary's host cut off. While it is away the rules change (the lab's subnet
    // for `late` too): its pg_hba.conf from before the cut has only app's row. Healed, it rejoins by
    // pg_rewind and must end with the rules the cluster has now.
    let mark = 0;
    const r = await faultRound(c, {
      label: "network cut", expect: "other",
      inject: async (p) => {
        mark = logMark(p);
        await p.host.cut();
      },
      restore: async (old, neu) => {
        await setAccess(neu, [rule("app", `${fx.client.ip}/32`), rule("late", c.lab.subnet)]);
        await loggedIn(fx, neu, false, "late");
        await old.host.heal();
      },
    });
    const path = rejoinPath(r.old, mark);
    console.log(`failover ${r.old.name} -> ${r.neu.name}; rejoin of ${r.old.name}:\n  ${path.lines.join("\n  ")}`);
    expect(path.decisions).toEqual(["rewind"]);
    expect(path.rewinds).toEqual(["rewound"]);
    const after = r.healthy;
    expect(after.primary).toBe(r.neu);
    expect(after.standbys).toContain(r.old);
    for (const user of ["app", "late"]) {
      await loggedIn(fx, after.primary, false, user);
      for (const s of after.standbys) await loggedIn(fx, s, true, user);
    }
    expect((await psql(fx, dsn)).out).toBe(`f|${r.neu.host.ip}`);

    // (4) No rule any more: locked out of every node, the rewound one included.
    await setAccess(after.standbys[0]!, []);
    for (const user of ["app", "late"]) for (const n of c.nodes) await refused(fx, n, user);
    const none = await psql(fx, dsn);
    expect(none.ok).toBe(false);
    expect(none.err).toContain(`no pg_hba.conf entry for host "${fx.client.ip}", user "app"`);
  }), 150_000);
});
