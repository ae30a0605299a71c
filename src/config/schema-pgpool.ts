// [pgpool]: keep a pgpool-II in front of the cluster pointed at the current primary through its
// PCP port (docs/pgpool.md). Own zod object; schema.ts only references it.
import { z } from "zod";
import { isHost } from "./hostport.ts";
import { absPath } from "./pg-values.ts";

export const pgpoolSection = () => z
  .strictObject({
    /** pgpool's PCP host; "" = no pgpool integration. */
    pcp_host: z.string().refine((h) => h === "" || isHost(h), 'must be a host name or IP address, or ""').default(""),
    pcp_port: z.int().min(1, "must be at least 1").max(65535, "must be at most 65535").default(9898),
    pcp_user: z.string().regex(/^[A-Za-z0-9_.-]{1,63}$/, "must be 1-63 characters of A-Z, a-z, 0-9, _, . and -").default("pgpool"),
    /** A .pcppass file (host:port:user:password), readable by the agent's user only. */
    pcp_password_file: z.union([z.literal(""), absPath('an absolute path, or ""')]).default(""),
    /** Where pcp_node_info & co. are ("" = /usr/sbin, then PATH). */
    bin_dir: z.union([z.literal(""), absPath('an absolute path, or ""')]).default(""),
    /** How often the leader compares pgpool's backends with the cluster. */
    interval_ms: z.int().min(100, "must be at least 100").max(60_000, "must be at most 60000").default(1000),
  })
  .superRefine((p, ctx) => {
    if (p.pcp_host && !p.pcp_password_file) ctx.addIssue({ code: "custom", path: ["pcp_password_file"], message: "is required with pgpool.pcp_host (the PCP password never goes into pgherd.toml or argv)" });
  });
