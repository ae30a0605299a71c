// Client access: `pgherd dsn` (a libpq URI that follows the primary) and `pgherd passwd ROLE`.
import { defineCommand } from "citty";
import { X509Certificate } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { isAbsolute } from "node:path";
import type { ClusterView } from "../core/cluster-view.ts";
import { ConfigError, loadConfig } from "../config/load.ts";
import { createLogger } from "../log.ts";
import { buildDsn, type DsnTarget } from "../ops/dsn.ts";
import { setPassword } from "../ops/passwd.ts";
import { readSecret } from "../ops/secret-input.ts";
import { apiArgs, apiBase, getJson } from "./api-client.ts";
import { type CliContext, CliExit, configPathFrom, DEFAULT_CONFIG_PATH, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

export const dsnCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "dsn", description: "Print a libpq multi-host URI for applications (target_session_attrs picks the primary, a replica or any)" },
    args: {
      ...apiArgs,
      primary: { type: "boolean", description: "Connect to the primary, wherever it is (default)" },
      replica: { type: "boolean", description: "Connect to a standby" },
      any: { type: "boolean", description: "Connect to the first node that answers" },
      user: { type: "string", valueHint: "role", description: "Database role (default: libpq's, the OS user name)" },
      dbname: { type: "string", valueHint: "name", description: "Database (default: libpq's, the role name)" },
      "ca-file": { type: "string", valueHint: "path", description: "The cluster CA on the client's host (a copy of a node's <data_dir>.tls/ca.crt): adds sslmode=verify-full and sslrootcert" },
    },
    run: async ({ args }) => {
      const picked = (["primary", "replica", "any"] as const).filter((k) => args[k]);
      if (picked.length > 1) throw new CliExit(EXIT_USAGE, "pgherd dsn: give one of --primary, --replica, --any");
      const target: DsnTarget = picked[0] ?? "primary";
      const caFile = args["ca-file"] === undefined ? undefined : checkCaFile(args["ca-file"]);
      const r = (await getJson(apiBase(args, ctx), "/cluster")) as { view: ClusterView };
      try {
        ctx.out(`${buildDsn(r.view.members, { target, user: args.user, dbname: args.dbname, caFile })}\n`);
      } catch (e) {
        throw new CliExit(EXIT_FAILURE, `pgherd dsn: ${(e as Error).message}`);
      }
    },
  });

/** More than any CA certificate (a chain of a few) takes. */
const CA_FILE_MAX_BYTES = 1 << 20;

/**
 * `--ca-file`: an absolute path (libpq reads it relative to the client's working directory
 * otherwise). A file there must be a regular file holding a CA certificate (opened without
 * blocking: a FIFO or a device is refused, not waited on); one that is not there may be the client
 * host's path: said on stderr, not refused.
 */
function checkCaFile(path: string): string {
  const fail = (why: string) => new CliExit(EXIT_FAILURE, `pgherd dsn: --ca-file ${path}: ${why} (expected a copy of a node's <data_dir>.tls/ca.crt)`);
  if (!isAbsolute(path)) throw new CliExit(EXIT_USAGE, `pgherd dsn: --ca-file ${JSON.stringify(path)}: give an absolute path (libpq would read it from the client's working directory)`);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw fail((e as Error).message);
    process.stderr.write(`pgherd dsn: ${path} is not on this host: copy a node's <data_dir>.tls/ca.crt there on the client's host\n`);
    return path;
  }
  let pem: string;
  try {
    if (!fstatSync(fd).isFile()) throw fail("not a regular file");
    // Read up to the cap and one byte more: the size fstat saw may have grown since.
    const buf = Buffer.alloc(CA_FILE_MAX_BYTES + 1);
    let n = 0;
    for (let got = -1; got !== 0 && n < buf.length; n += got) got = readSync(fd, buf, n, buf.length - n, null);
    if (n > CA_FILE_MAX_BYTES) throw fail("more than 1 MiB, more than a CA certificate takes");
    pem = buf.toString("utf8", 0, n);
  } catch (e) {
    throw e instanceof CliExit ? e : fail((e as Error).message);
  } finally {
    closeSync(fd);
  }
  let ca: boolean;
  try {
    ca = new X509Certificate(pem).ca;
  } catch {
    throw fail("holds no PEM certificate");
  }
  if (!ca) throw fail("holds a certificate that is not a CA's (a node's server.crt?)");
  return path;
}

export const passwdCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "passwd", description: "Set a database role's password (SCRAM verifier computed here; the password from a prompt or stdin, never the command line). Run on the primary's host as root or postgres" },
    args: {
      role: { type: "positional", required: true, description: "Role name" },
      create: { type: "boolean", description: "Create the role (LOGIN) if it does not exist" },
      config: { type: "string", valueHint: "path", description: `Config file (default: $PGHERD_CONFIG or ${DEFAULT_CONFIG_PATH})` },
    },
    run: async ({ args }) => {
      let cfg;
      try {
        cfg = loadConfig(configPathFrom(args.config, ctx));
      } catch (e) {
        if (e instanceof ConfigError) throw new CliExit(EXIT_USAGE, e.message);
        throw e;
      }
      let password: string;
      try {
        password = await readSecret(`password for ${args.role}`);
      } catch (e) {
        throw new CliExit(EXIT_FAILURE, `pgherd passwd: ${(e as Error).message}`);
      }
      try {
        const done = await setPassword(cfg, { role: args.role, password, create: !!args.create, log: createLogger("error", "passwd") });
        ctx.out(`${done} role ${args.role} (password stored as a SCRAM-SHA-256 verifier)\n`);
      } catch (e) {
        throw new CliExit(EXIT_FAILURE, `pgherd passwd: ${(e as Error).message}`);
      }
    },
  });
