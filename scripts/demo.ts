// `npm run demo`: builds dist/pgherd if needed, then runs a 3-node cluster on loopback in the
// foreground (src/demo/run.ts) until Ctrl-C.
//   bun scripts/demo.ts [--keep] [--timeout SECONDS]
import { parseArgs } from "node:util";
import { createLogger } from "../src/log.ts";
import { parseDemoOptions, type DemoOptions, DEFAULT_TIMEOUT_SEC } from "../src/demo/options.ts";
import { runDemo } from "../src/demo/run.ts";
import { shortPath } from "../src/self.ts";
import { abortOnSignals } from "../src/demo/signals.ts";
import { BINARY, ensureBuilt, isUpToDate } from "./build.ts";

const USAGE = `usage: npm run demo -- [--keep] [--timeout SECONDS]
  --keep             keep the scratch directory (configs, logs, data) after stopping
  --timeout SECONDS  give up if the cluster is not ready in time (default ${DEFAULT_TIMEOUT_SEC})
`;

function options(): DemoOptions | number {
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      options: { keep: { type: "boolean" }, timeout: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    return parseDemoOptions(values);
  } catch (e) {
    process.stderr.write(`${USAGE}\ndemo: ${(e as Error).message}\n`);
    return 2;
  }
}

async function main(): Promise<number> {
  const opts = options();
  if (typeof opts === "number") return opts;
  const signals = abortOnSignals((sig) => process.stdout.write(`${sig}: already stopping, please wait\n`));
  try {
    if (!isUpToDate()) process.stdout.write(`building ${shortPath(BINARY)}...\n`);
    try {
      ensureBuilt();
    } catch (e) {
      process.stderr.write(`demo: cannot build ${BINARY}: ${(e as Error).message}\n`);
      return 1;
    }
    if (signals.signal.aborted) return 0;
    return await runDemo({
      pgherd: { argv: [BINARY], display: shortPath(BINARY) },
      options: opts,
      stop: signals.signal,
      out: (t) => process.stdout.write(t),
      log: createLogger("error", "demo"),
    });
  } finally {
    signals.dispose();
  }
}

const code = await main();
await new Promise<void>((r) => process.stdout.write("", () => r()));
process.exit(code);
