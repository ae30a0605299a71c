// Finds which (sub)command argv selects and rejects flags it does not define. citty itself
// ignores unknown flags, so a typo like --confg would silently fall back to the default path.
import type { ArgsDef, CommandDef } from "citty";

type AnyCommand = CommandDef<ArgsDef>;
type Resolvable<T> = T | Promise<T> | (() => T) | (() => Promise<T>);

async function value<T>(v: Resolvable<T> | undefined): Promise<T | undefined> {
  return typeof v === "function" ? await (v as () => T | Promise<T>)() : await v;
}

const flagName = (token: string) => (token.replace(/^--?/, "").split("=")[0] ?? "");
const camel = (s: string) => s.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());

function findArg(defs: ArgsDef, name: string) {
  for (const [key, def] of Object.entries(defs)) {
    const aliases = "alias" in def ? [def.alias ?? []].flat() : [];
    if (key === name || key === camel(name) || aliases.includes(name)) return def;
  }
  return undefined;
}

/** Index of the first positional token, skipping the values of string flags. */
function firstPositional(tokens: readonly string[], defs: ArgsDef): number {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] ?? "";
    if (t === "--") return -1;
    if (!t.startsWith("-")) return i;
    const def = findArg(defs, flagName(t));
    if (!t.includes("=") && (def?.type === "string" || def?.type === "enum")) i++;
  }
  return -1;
}

export type Resolved = { cmd: AnyCommand; parent?: AnyCommand; rest: string[] };

export async function resolveCommand(root: AnyCommand, argv: readonly string[]): Promise<Resolved> {
  let r: Resolved = { cmd: root, rest: [...argv] };
  for (;;) {
    const subs = await value(r.cmd.subCommands);
    if (!subs) return r;
    const i = firstPositional(r.rest, (await value(r.cmd.args)) ?? {});
    const sub = i < 0 ? undefined : await value(subs[r.rest[i] ?? ""]);
    if (!sub) return r;
    r = { cmd: sub as AnyCommand, parent: r.cmd, rest: r.rest.slice(i + 1) };
  }
}

/** Options that are gone on purpose, with what to use instead. */
const REFUSED: Record<string, string> = {
  token: "--token is refused: every local user sees a command line (ps, /proc). Use --token-file PATH or $PGHERD_TOKEN",
};

/** A usage problem in `rest` for a leaf command, or undefined. */
export async function checkArgs(cmd: AnyCommand, rest: readonly string[]): Promise<string | undefined> {
  if (await value(cmd.subCommands)) return undefined; // groups: citty reports unknown subcommands
  const defs = (await value(cmd.args)) ?? {};
  // A positional marked `variadic` (config set KEY=VALUE…) takes every remaining argument.
  const variadic = Object.values(defs).some((d) => d.type === "positional" && (d as { variadic?: boolean }).variadic);
  const positionals = variadic ? Infinity : Object.values(defs).filter((d) => d.type === "positional").length;
  let seen = 0;
  for (let i = 0; i < rest.length; i++) {
    const t = rest[i] ?? "";
    if (t === "--") break;
    if (t.startsWith("-") && t !== "-") {
      const name = flagName(t);
      const negated = name.startsWith("no-") ? findArg(defs, name.slice(3)) : undefined;
      const def = findArg(defs, name) ?? (negated?.type === "boolean" ? negated : undefined);
      if (!def && REFUSED[name]) return REFUSED[name];
      if (!def || def.type === "positional") return `unknown option ${t.split("=")[0]}`;
      if (!t.includes("=") && (def.type === "string" || def.type === "enum")) {
        if (i + 1 >= rest.length) return `option ${t} needs a value`;
        i++;
      }
    } else if (++seen > positionals) {
      return `unexpected argument "${t}"`;
    }
  }
  return undefined;
}
