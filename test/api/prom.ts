// A strict parser of the Prometheus text exposition format (0.0.4) for the tests: it throws on
// anything a scraper would reject or misread (bad names, bad escapes, samples without a TYPE,
// a TYPE after its samples, duplicate series, bad values), naming the line.

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: { labels: Record<string, string>; value: number }[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

export function parseProm(text: string): Map<string, Family> {
  const fams = new Map<string, Family>();
  const seen = new Set<string>();
  if (!text.endsWith("\n")) throw new Error("exposition must end with a newline");
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, i) => {
    const at = `line ${i + 1} ${JSON.stringify(line.slice(0, 120))}`;
    if (line === "") return;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // a plain comment
      const [, kw, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`${at}: bad metric name`);
      const f = fams.get(name) ?? { name, type: "", help: "", samples: [] };
      if (kw === "TYPE") {
        if (!TYPES.has(rest)) throw new Error(`${at}: unknown type`);
        if (f.type) throw new Error(`${at}: second TYPE for ${name}`);
        if (f.samples.length) throw new Error(`${at}: TYPE after samples of ${name}`);
        f.type = rest;
      } else f.help = rest;
      fams.set(name, f);
      return;
    }
    const { name, labels, rest } = sampleHead(line, at);
    const f = fams.get(name);
    if (!f?.type) throw new Error(`${at}: sample of ${name} without a preceding TYPE`);
    const parts = rest.trim().split(/\s+/);
    if (parts.length < 1 || parts.length > 2 || rest[0] !== " ") throw new Error(`${at}: expected " value [timestamp]"`);
    const value = parseValue(parts[0]!, at);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`${at}: bad timestamp`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`${at}: duplicate series`);
    seen.add(key);
    if (f.type === "counter" && !(value >= 0)) throw new Error(`${at}: negative counter`);
    f.samples.push({ labels, value });
  });
  return fams;
}

function sampleHead(line: string, at: string): { name: string; labels: Record<string, string>; rest: string } {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
  if (!m) throw new Error(`${at}: bad metric name`);
  const name = m[1]!;
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    while (line[i] !== "}") {
      const lm = /^([^=]*)="/.exec(line.slice(i));
      if (!lm || !LABEL.test(lm[1]!)) throw new Error(`${at}: bad label at column ${i + 1}`);
      i += lm[0].length;
      let v = "";
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new Error(`${at}: unterminated label value`);
        i++;
        if (c === '"') break;
        if (c === "\\") {
          const e = line[i++];
          if (e === "n") v += "\n";
          else if (e === "\\" || e === '"') v += e;
          else throw new Error(`${at}: bad escape \\${e}`);
        } else v += c;
      }
      if (lm[1]! in labels) throw new Error(`${at}: duplicate label ${lm[1]}`);
      labels[lm[1]!] = v;
      if (line[i] === ",") i++;
      else if (line[i] !== "}") throw new Error(`${at}: expected , or } at column ${i + 1}`);
    }
    i++;
  }
  return { name, labels, rest: line.slice(i) };
}

function parseValue(s: string, at: string): number {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`${at}: bad value ${s}`);
  return Number(s);
}

/** The one sample of `name` whose labels include `match`; throws when there is none or several. */
export function sample(fams: Map<string, Family>, name: string, match: Record<string, string> = {}): number {
  const f = fams.get(name);
  if (!f) throw new Error(`no metric ${name} (have ${[...fams.keys()].join(", ")})`);
  const hits = f.samples.filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v));
  if (hits.length !== 1) throw new Error(`${hits.length} samples of ${name} match ${JSON.stringify(match)}: ${JSON.stringify(f.samples)}`);
  return hits[0]!.value;
}
