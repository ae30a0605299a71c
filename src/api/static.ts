// The dashboard's files, compiled into the binary as text imports: nothing is read from disk at
// request time, so no request path can reach the filesystem. Odd paths are refused anyway, with
// a clear 400, before routing.
import indexHtml from "./web/index.html" with { type: "text" };
import styleCss from "./web/style.css" with { type: "text" };
import appJs from "./web/app.js" with { type: "text" };
import liveJs from "./web/live.js" with { type: "text" };
import { error } from "./http.ts";

const asText = (x: unknown, name: string): string => {
  if (typeof x !== "string") throw new Error(`dashboard asset ${name} was not embedded as text`);
  return x;
};

// (nosniff goes on every answer of the API: http.ts withCommonHeaders)
const SECURITY = {
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

const ASSETS: Readonly<Record<string, { body: string; type: string }>> = {
  "/ui/style.css": { body: asText(styleCss, "style.css"), type: "text/css; charset=utf-8" },
  "/ui/app.js": { body: asText(appJs, "app.js"), type: "text/javascript; charset=utf-8" },
  "/ui/live.js": { body: asText(liveJs, "live.js"), type: "text/javascript; charset=utf-8" },
};
const PAGE = asText(indexHtml, "index.html");

export function dashboard(): Response {
  return new Response(PAGE, {
    headers: {
      ...SECURITY, "content-type": "text/html; charset=utf-8", "x-frame-options": "DENY",
      "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    },
  });
}

export function asset(path: string): Response {
  const a = ASSETS[path];
  return a ? new Response(a.body, { headers: { ...SECURITY, "content-type": a.type } }) : error(404, `no dashboard file ${path}`);
}

/** The path of the request target as Bun hands it over (absolute URL, or origin-form without a Host header). */
export function rawPath(url: string): string {
  const m = /^(?:[a-z]+:\/\/[^/?#]*)?([^?#]*)/i.exec(url);
  return m?.[1] || "/";
}

/** Why the raw path is refused (traversal, encoded separators, NUL), or null. */
export function badPath(raw: string): string | null {
  let decoded = raw;
  // Decode repeatedly: "%252e%252e" is ".." after two rounds.
  for (let i = 0; i < 3; i++) {
    try {
      const next = decodeURIComponent(decoded);
      if (next === decoded) break;
      decoded = next;
    } catch {
      return "malformed percent-encoding in the path";
    }
  }
  if (decoded.includes("\0")) return "NUL byte in the path";
  if (decoded.includes("\\")) return "backslash in the path";
  if (decoded.split("/").some((seg) => seg === ".." || seg === ".")) return "path traversal (\"..\" or \".\" segment) refused";
  if (/%2f/i.test(raw)) return "encoded \"/\" in the path refused";
  return null;
}
