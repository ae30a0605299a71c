// The agent's HTTP API. Today: status for the CLI and tests; the health
// endpoints, actions and metrics arrive with the API issue.
import type { Logger } from "../log.ts";

export interface ApiSource {
  status(): unknown;
  clusterView(): Promise<{ source: "leader" | "local"; view: unknown }>;
}

export interface ApiServer {
  url: string;
  stop(): Promise<void>;
}

const json = (body: unknown, status = 200) =>
  new Response(`${JSON.stringify(body, null, 2)}\n`, { status, headers: { "content-type": "application/json" } });

export function startApi(opts: { host: string; port: number; source: ApiSource; log: Logger }): ApiServer {
  const server = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    routes: {
      "/node": { GET: () => json(opts.source.status()) },
      "/cluster": { GET: async () => json(await opts.source.clusterView()) },
      "/liveness": { GET: () => json({ ok: true }) },
    },
    fetch: (req) => json({ error: `no route ${req.method} ${new URL(req.url).pathname}` }, 404),
    error: (e) => {
      opts.log.error(`api: ${e.message}`);
      return json({ error: "internal error" }, 500);
    },
  });
  const url = `http://${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${server.port}`;
  opts.log.info(`api listening on ${url}`);
  return { url, stop: async () => void (await server.stop(true)) };
}
