// [log]: the agent's own log (level, format) and where PostgreSQL's server log goes and how it
// is rotated (rendered into pgherd.conf by src/ops/pg-log.ts).
import { z } from "zod";
import { absPath, noControl } from "./pg-values.ts";

export const logSection = () => z.strictObject({
  level: z.enum(["debug", "info", "warn", "error"], 'must be one of "debug", "info", "warn", "error"').default("info"),
  format: z.enum(["text", "json"], 'must be "text" or "json"').default("text"),
  /** PostgreSQL's logging_collector directory; "" = "<data_dir>.log". */
  postgres_dir: z.union([z.literal(""), absPath('an absolute path or ""')]).default(""),
  /** log_filename (strftime escapes); the default keeps one file per weekday: seven days, overwritten weekly. */
  postgres_filename: z
    .string()
    .min(1, "must not be empty")
    .refine((s) => noControl(s) && !s.includes("/"), "must be a file name (no '/', no control characters)")
    .default("postgresql-%a.log"),
  /** log_rotation_age: "0" disables time-based rotation. */
  postgres_rotation_age: z.string().regex(/^(0|[1-9]\d* *(min|h|d))$/, 'must be a time like "1d", "12h", "30min", or "0"').default("1d"),
});
