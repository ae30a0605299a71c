// Turns zod issues into one line per problem: "<file>: <dotted.key> <message>".
// Never prints input values: a mistyped key may hold the cluster secret.
import type { z } from "zod";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly lines: readonly string[]) {
    super(lines.join("\n"));
  }
}

const EXPECTED: Record<string, string> = {
  int: "an integer",
  number: "a number",
  string: "a string",
  boolean: "true or false",
  array: "an array",
  object: "a table",
};

function kind(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (v instanceof Date || (v !== null && typeof v === "object" && v.constructor?.name === "TomlDate")) return "date";
  if (v !== null && typeof v === "object") return "table";
  return typeof v;
}

/** Per-parse zod error map: "is required" and "must be X (got Y)" instead of zod's wording. */
export const configErrorMap: z.core.$ZodErrorMap = (iss) => {
  if (iss.code !== "invalid_type") return undefined;
  if (iss.input === undefined) return "is required";
  const want = EXPECTED[iss.expected] ?? iss.expected;
  // A number's value is safe to show and explains "1.5 is not an integer"; other values may be secrets.
  const numeric = iss.expected === "int" || iss.expected === "number";
  const got = numeric && typeof iss.input === "number" ? String(iss.input) : kind(iss.input);
  return `must be ${want} (got ${got})`;
};

export function issueLines(fileLabel: string, issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.flatMap((iss) => {
    const at = iss.path.map(String).join(".");
    if (iss.code === "unrecognized_keys") {
      return iss.keys.map((k) => `${fileLabel}: unknown key ${at ? `${at}.` : ""}${k}`);
    }
    return [`${fileLabel}: ${at ? `${at} ` : ""}${iss.message}`];
  });
}
