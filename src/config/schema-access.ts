// [[access]]: client access rules pgherd writes into every node's managed pg_hba.conf block,
// after its own rows. Checked here so a rule can never inject a second line or a keyword row.
import { isIP } from "node:net";
import { z } from "zod";

const NAME = /^[a-z_][a-z0-9_$-]{0,62}$/;
const KEYWORDS = new Set(["all", "sameuser", "samerole", "samegroup", "replication"]);

/** "all", or a comma-separated list of database names ("replication" is pgherd's own). */
const databases = z.string().refine(
  (s) => s === "all" || s.split(",").every((d) => NAME.test(d) && !KEYWORDS.has(d)),
  'must be "all" or a comma-separated list of lower-case database names',
);

/** "all", or a comma-separated list of role names, "+role" for its members. */
const users = z.string().refine(
  (s) => s === "all" || s.split(",").every((u) => NAME.test(u.replace(/^\+/, "")) && !KEYWORDS.has(u.replace(/^\+/, ""))),
  'must be "all" or a comma-separated list of lower-case role names (+role for its members)',
);

/** An IPv4/IPv6 network in CIDR notation (a bare address means that one host). */
export function cidrProblem(s: string): string {
  const [addr = "", prefix, extra] = s.split("/");
  const v = isIP(addr);
  if (!v || extra !== undefined) return "must be an IPv4 or IPv6 address or network (CIDR, e.g. 10.0.0.0/24)";
  if (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= (v === 4 ? 32 : 128))) return `has a prefix length out of range (0..${v === 4 ? 32 : 128})`;
  return "";
}

export const accessRule = z
  .strictObject({
    type: z.enum(["host", "hostssl", "hostnossl", "local"], 'must be "host", "hostssl", "hostnossl" or "local"').default("host"),
    database: databases.default("all"),
    user: users,
    /** Required for host types; absent for local. */
    address: z.string().optional(),
    /** No "trust" or "password": a password never travels in clear, nobody logs in without proof. */
    method: z.enum(["scram-sha-256", "cert", "reject"], 'must be "scram-sha-256", "cert" or "reject"').default("scram-sha-256"),
  })
  .superRefine((r, ctx) => {
    if (r.type === "local") {
      if (r.address !== undefined) ctx.addIssue({ code: "custom", path: ["address"], message: 'must be absent for type "local"' });
      if (r.method === "cert") ctx.addIssue({ code: "custom", path: ["method"], message: 'cert needs a TCP type ("hostssl")' });
      return;
    }
    if (r.address === undefined) ctx.addIssue({ code: "custom", path: ["address"], message: "is required (a network in CIDR notation)" });
    else {
      const p = cidrProblem(r.address);
      if (p) ctx.addIssue({ code: "custom", path: ["address"], message: p });
    }
    if (r.method === "cert" && r.type !== "hostssl") ctx.addIssue({ code: "custom", path: ["method"], message: 'cert needs type "hostssl"' });
  });

export const accessRules = z.array(accessRule).max(1000).default(() => []);
export type AccessRule = z.output<typeof accessRule>;

/**
 * Why the rule at `index` can never admit anyone: it names pgherd's replication role over TCP, which
 * pgherd's pg_hba block rejects from every address but the peers' before any client rule
 * (src/postgres/hba.ts); or null. A rule of `method = "reject"` changes nothing, so it is let be.
 */
export function shadowedAccessRule(r: Pick<AccessRule, "type" | "user" | "method">, replUser: string): string | null {
  if (r.type === "local" || r.method === "reject") return null;
  if (!r.user.split(",").includes(replUser)) return null;
  return `names ${replUser}, pgherd's replication role (postgres.repl_user), which pgherd's pg_hba block rejects over TCP from every address but the peers' before any client rule: this rule would never admit it; give that client a role of its own`;
}
