// What a command may touch besides its arguments: main.ts owns argv, env, stdout and exit,
// and hands them down so commands stay testable and never exit the process themselves.

export type CliContext = {
  readonly env: Readonly<Record<string, string | undefined>>;
  out(text: string): void;
  err(text: string): void;
};

/** Thrown by a command to end with a message (to stderr) and an exit code. */
export class CliExit extends Error {
  override readonly name = "CliExit";
  constructor(readonly code: number, message = "") {
    super(message);
  }
}

/** Exit codes: 1 = the command failed, 2 = bad usage or bad config. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export const DEFAULT_CONFIG_PATH = "/etc/pgherd/pgherd.toml";

/** --config, else $PGHERD_CONFIG, else the packaged default. */
export function configPathFrom(arg: string | undefined, ctx: CliContext): string {
  return arg || ctx.env.PGHERD_CONFIG || DEFAULT_CONFIG_PATH;
}
