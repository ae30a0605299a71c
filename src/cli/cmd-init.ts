import { closeSync, constants as C, fchownSync, mkdirSync, openSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { defineCommand } from "citty";
import { ConfigError, parseConfig } from "../config/load.ts";
import { isRoot, lookupOsUser } from "../postgres/users.ts";
import { writeFileDurable } from "../store/durable.ts";
import { type CliContext, CliExit, configPathFrom, DEFAULT_CONFIG_PATH, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";
import { generateSecret, starterConfig } from "./starter.ts";

export const initCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "init", description: "Write a starter config with a freshly generated cluster secret" },
    args: {
      config: {
        type: "string",
        valueHint: "path",
        description: `Where to write it (default: $PGHERD_CONFIG or ${DEFAULT_CONFIG_PATH})`,
      },
      cluster: { type: "string", valueHint: "name", description: "Cluster name", default: "main" },
      force: { type: "boolean", description: "Replace an existing file (its secret is lost)" },
    },
    run: async ({ args }) => {
      const path = resolve(configPathFrom(args.config, ctx));
      const text = starterConfig({ cluster: args.cluster, secret: generateSecret() });
      let osUser: string;
      try {
        osUser = parseConfig(text, basename(path)).postgres.os_user; // never write a file the agent would reject
      } catch (e) {
        if (e instanceof ConfigError) throw new CliExit(EXIT_USAGE, e.message);
        throw e;
      }
      try {
        mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
        await writeFileDurable(path, text, 0o600, { exclusive: !args.force });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST") {
          throw new CliExit(EXIT_FAILURE, `${path} already exists; pass --force to replace it (its secret is lost)`);
        }
        throw new CliExit(EXIT_FAILURE, `cannot write ${path}: ${(e as Error).message}`);
      }
      // The agent runs as postgres.os_user (deploy/pgherd.service) and reads only a file it owns.
      const owner = isRoot() ? await giveTo(path, osUser) : "";
      ctx.out(
        `wrote ${path} (cluster "${args.cluster}", mode 0600${owner})\n` +
          "copy it to every node of the cluster: they must share the same secret\n",
      );
    },
  });

/** As root: hand the new file to the agent's OS user (through its descriptor, never a link). */
async function giveTo(path: string, user: string): Promise<string> {
  const u = await lookupOsUser(user).catch(() => null);
  if (!u) return `, owned by root: OS user "${user}" does not exist; chown it to the user the agent runs as`;
  const fd = openSync(path, C.O_RDONLY | C.O_NOFOLLOW);
  try {
    fchownSync(fd, u.uid, u.gid);
  } finally {
    closeSync(fd);
  }
  return `, owned by ${user}, the agent's OS user`;
}
