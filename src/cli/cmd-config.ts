// `pgherd config show|set|edit` (the cluster-wide configuration, agreed through the leader:
// src/agent/dynamic-config.ts) and `pgherd config check [FILE]` (the local file, without starting anything).
import { spawnSync } from "node:child_process";
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { stdin } from "node:process";
import { defineCommand } from "citty";
import { parse, stringify, TomlError } from "smol-toml";
import { ConfigError, loadConfig, privacyProblem, secretFileProblem, secretFiles } from "../config/load.ts";
import { checkSettings, conflictLine, type Conflict, decideChange, diffLines, parseAssignment } from "../config/dynamic.ts";
import type { DynamicDoc, DynamicSettings } from "../config/schema-dynamic.ts";
import { apiArgs, apiBase, apiToken, getJson, sendAction, tokenArg } from "./api-client.ts";
import { type CliContext, CliExit, configPathFrom, DEFAULT_CONFIG_PATH, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";
import { programProblems } from "../hooks/programs.ts";

interface ConfigDoc extends Record<string, unknown> {
  dynamic?: { cluster: DynamicDoc | null; conflicts: Conflict[] };
  /** The agent replaced what looks like a credential (the request did not carry the API token). */
  redacted?: boolean;
}

/** GET /config, with the API token when there is one (the values as they are, not redacted). */
async function fetchConfig(base: string, token: string): Promise<ConfigDoc> {
  return (await getJson(base, "/config", 5000, token)) as ConfigDoc;
}

function current(c: ConfigDoc): DynamicDoc {
  const doc = c.dynamic?.cluster;
  if (!doc) throw new CliExit(EXIT_FAILURE, "the cluster has no cluster-wide configuration yet (its leader creates version 1 from its pgherd.toml within seconds of leading): try again");
  return doc;
}

async function patch(args: Parameters<typeof apiBase>[0] & Parameters<typeof apiToken>[0], ctx: CliContext, body: unknown): Promise<void> {
  const r = await sendAction(apiBase(args, ctx), "PATCH", "/config", body, apiToken(args, ctx));
  ctx.out(`${r.message}\n`);
  if (!r.ok) throw new CliExit(EXIT_FAILURE, "");
}

/** The TOML `config edit` opens: the settings with a header naming the version. */
export function settingsToml(doc: DynamicDoc): string {
  return [
    `# pgherd cluster-wide configuration, version ${doc.version} (made by ${doc.by} at ${doc.at}).`,
    "# Saved and confirmed, it becomes the next version on every node. Keys: durability,",
    "# [postgres.parameters], [failover] max_lag_bytes, [[access]] rules.",
    "",
    stringify(doc.settings),
  ].join("\n");
}

/** The edited text as settings, or the reason (naming the line or the key) it is refused. */
export function parseEdited(text: string): { ok: true; settings: DynamicSettings } | { ok: false; error: string } {
  let raw: unknown;
  try {
    raw = parse(text, { unsafeKeyBehaviour: "throw" } as Parameters<typeof parse>[1]);
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    return { ok: false, error: `edited configuration: TOML syntax error at line ${e.line} column ${e.column}: ${(e.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "")}` };
  }
  return checkSettings(raw, "edited configuration");
}

async function readLine(): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const onData = (b: Buffer) => {
      text += b.toString("utf8");
      if (text.includes("\n")) done();
    };
    const done = () => {
      stdin.off("data", onData);
      stdin.off("end", done);
      stdin.pause();
      resolve(text.split("\n")[0] ?? "");
    };
    stdin.on("data", onData);
    stdin.on("end", done);
    stdin.resume();
  });
}

function showText(c: ConfigDoc): string {
  const { dynamic, ...local } = c;
  const out: string[] = [];
  const doc = dynamic?.cluster;
  if (doc) {
    out.push(`# cluster-wide configuration: version ${doc.version} (made by ${doc.by} at ${doc.at}, term ${doc.term})`, stringify(doc.settings), "");
  } else out.push(dynamic ? "# no cluster-wide configuration yet: every node runs its pgherd.toml values" : "# this agent does not report a cluster-wide configuration", "");
  for (const k of dynamic?.conflicts ?? []) out.push(`# CONFLICT ${conflictLine(k)}`);
  if (dynamic?.conflicts.length) out.push("");
  out.push(`# local configuration (pgherd.toml of this node${doc ? "; the cluster-wide values above win" : ""})`, stringify(local));
  return `${out.join("\n")}\n`;
}

export const configCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "config", description: "Show and change the cluster-wide configuration (through the leader); check the local config file" },
    subCommands: {
      show: defineCommand({
        meta: { name: "show", description: "The cluster-wide configuration (version, values, conflicts with pgherd.toml) and the local agent's configuration (GET /config: secret and token redacted; without the API token also what looks like a credential)" },
        args: { ...apiArgs, ...tokenArg, json: { type: "boolean", description: "Print JSON (default: TOML)" } },
        run: async ({ args }) => {
          const c = await fetchConfig(apiBase(args, ctx), apiToken(args, ctx));
          ctx.out(args.json ? `${JSON.stringify(c, null, 2)}\n` : showText(c));
        },
      }),
      set: defineCommand({
        meta: { name: "set", description: "KEY=VALUE… in one versioned change: durability=quorum|strict|async, postgres.parameters.NAME=VALUE (empty VALUE removes it), failover.max_lag_bytes=N, access=JSON" },
        args: { ...apiArgs, ...tokenArg, setting: { type: "positional", required: true, description: "KEY=VALUE (several allowed)", variadic: true } as { type: "positional"; required: true; description: string } },
        run: async ({ args }) => {
          const texts = (args._ as string[] | undefined)?.length ? (args._ as string[]) : [args.setting];
          const set: Record<string, unknown> = {};
          for (const t of texts) {
            const a = parseAssignment(t);
            if (typeof a === "string") throw new CliExit(EXIT_USAGE, `pgherd config set: ${a}`);
            set[a.key] = a.value;
          }
          const base = apiBase(args, ctx);
          const c = await fetchConfig(base, apiToken(args, ctx));
          const doc = c.dynamic?.cluster;
          if (doc) {
            // Checked here with the same schema the leader uses: a bad value costs no round trip.
            const d = decideChange(doc, { base: doc.version, set }, { term: doc.term, at: "", by: "" });
            if (!d.ok) throw new CliExit(d.status === 400 ? EXIT_USAGE : EXIT_FAILURE, `pgherd config set: ${d.error}`);
          }
          await patch(args, ctx, { ...(doc ? { base: doc.version } : {}), set });
        },
      }),
      edit: defineCommand({
        meta: { name: "edit", description: "Edit the cluster-wide configuration in $EDITOR (TOML), see the diff, confirm; checked with the same schema (an invalid edit changes nothing)" },
        args: { ...apiArgs, ...tokenArg, yes: { type: "boolean", description: "Apply without asking" } },
        run: async ({ args }) => {
          const base = apiBase(args, ctx);
          const fetched = await fetchConfig(base, apiToken(args, ctx));
          // Redacted values written back would replace the real ones.
          if (fetched.redacted === true) throw new CliExit(EXIT_USAGE, "pgherd config edit: the agent sent the configuration with credentials redacted (no valid API token: --token-file or $PGHERD_TOKEN); nothing changed");
          const doc = current(fetched);
          const dir = mkdtempSync(join(tmpdir(), "pgherd-config-"));
          let edited: string;
          try {
            const file = join(dir, "cluster-config.toml");
            writeFileSync(file, settingsToml(doc), { mode: 0o600 });
            const editor = ctx.env.VISUAL || ctx.env.EDITOR || "vi";
            // The editor may carry arguments ("code --wait"): run through sh, the file as "$1".
            const r = spawnSync("/bin/sh", ["-c", `${editor} "$1"`, "sh", file], { stdio: "inherit" });
            if (r.status !== 0) throw new CliExit(EXIT_FAILURE, `pgherd config edit: the editor (${editor}) ended with ${r.status ?? r.signal}: nothing changed`);
            edited = readFileSync(file, "utf8");
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
          const p = parseEdited(edited);
          if (!p.ok) throw new CliExit(EXIT_USAGE, `pgherd config edit: ${p.error}: nothing changed`);
          const diff = diffLines(doc.settings, p.settings);
          if (diff.length === 0) {
            ctx.out(`no change (version ${doc.version})\n`);
            return;
          }
          ctx.out(`${diff.join("\n")}\n`);
          if (!args.yes) {
            ctx.out(`Apply this as version ${doc.version + 1} of the cluster-wide configuration? [y/N] `);
            const answer = (await readLine()).trim().toLowerCase();
            if (answer !== "y" && answer !== "yes") throw new CliExit(EXIT_FAILURE, "not applied: nothing changed");
          }
          await patch(args, ctx, { base: doc.version, replace: p.settings });
        },
      }),
      check: defineCommand({
        meta: { name: "check", description: `Validate a config file as the agent would load it (exit 2 naming file and key); default $PGHERD_CONFIG or ${DEFAULT_CONFIG_PATH}` },
        args: { file: { type: "positional", required: false, description: "config file" } },
        run: ({ args }) => {
          const path = resolve(args.file || configPathFrom(undefined, ctx));
          let cfg;
          try {
            cfg = loadConfig(path);
          } catch (e) {
            if (e instanceof ConfigError) throw new CliExit(EXIT_USAGE, e.message);
            throw e;
          }
          // The agent also refuses a file group or others may read (ownership it checks against its own user at start).
          const fd = openSync(path, "r");
          let problem: string;
          let owner: number;
          try {
            const st = fstatSync(fd);
            problem = privacyProblem(st, path, st.uid);
            owner = st.uid; // the agent runs as the file's owner (it refuses another's)
          } finally {
            closeSync(fd);
          }
          if (problem) throw new CliExit(EXIT_USAGE, `${basename(path)}: ${problem}`);
          // And the secret files it names, as the agent reads them (readPrivateFile), and the programs
          // it would run (hooks/programs.ts), as the agent's user would find them.
          const secrets = [...secretFiles(cfg).map(([key, p]) => secretFileProblem(p, key)).filter(Boolean), ...programProblems(cfg, owner)];
          if (secrets.length) throw new CliExit(EXIT_USAGE, secrets.map((m) => `${basename(path)}: ${m}`).join("\n"));
          ctx.out(`${path}: valid (cluster ${cfg.cluster}, node ${cfg.node_name}, ${cfg.role})\n`);
        },
      }),
    },
  });
