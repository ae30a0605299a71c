// A loopback receiver of Sentry's envelope endpoint for the e2e tests: run in a namespace host as
// `bun sentry-receiver.ts PORT FILE`, it answers 200 to every POST and appends one JSON line per
// request ({path, auth, type, body}) to FILE.
import { appendFileSync } from "node:fs";

const [port, file] = process.argv.slice(2);
if (!port || !file) throw new Error("usage: sentry-receiver.ts PORT FILE");
Bun.serve({
  hostname: "127.0.0.1", port: Number(port),
  fetch: async (req) => {
    const body = await req.text();
    appendFileSync(file, JSON.stringify({ path: new URL(req.url).pathname, auth: req.headers.get("x-sentry-auth"), type: req.headers.get("content-type"), body }) + "\n");
    return new Response("{}");
  },
});
console.log(`sentry receiver listening on 127.0.0.1:${port}`);
