// Bundled into the binary at build time, so `pgherd version` needs no file at run time.
import pkg from "../../package.json" with { type: "json" };

export const VERSION: string = pkg.version;

export function versionLine(): string {
  return `pgherd ${VERSION} (bun ${Bun.version}, ${process.platform}-${process.arch})`;
}
