// A client writing through pgpool-II for pgpool.e2e.test.ts, run in the pgpool host's namespace:
// `bun pgpool-writer.ts HOST PORT FILE [dir]`. Every 50 ms one INSERT on one connection
// (reconnecting after an error), each under a 1 s deadline; one JSON line per attempt in FILE:
// {start, end, ok, addr, err}: addr names the server that acknowledged, inet_server_addr(), or
// with `dir` its data directory (through a virtual IP every server has the same address).
// Stops on SIGTERM.
import { appendFileSync } from "node:fs";
import postgres from "postgres";

const [host, port, file, mode] = process.argv.slice(2);
if (!host || !port || !file) throw new Error("usage: pgpool-writer.ts HOST PORT FILE");
const connect = () => postgres({
  host, port: Number(port), user: "app", database: "postgres", pass: () => "", max: 1, connect_timeout: 1,
  idle_timeout: 0, max_lifetime: null, fetch_types: false, prepare: false, onnotice: () => {},
});
let sql = connect();
let stopped = false;
process.on("SIGTERM", () => (stopped = true));
console.log("pgpool writer started");
while (!stopped) {
  const start = Date.now();
  let rec: Record<string, unknown>;
  try {
    const q = mode === "dir"
      ? sql`insert into pool_w (at) values (now()) returning current_setting('data_directory') as addr`
      : sql`insert into pool_w (at) values (now()) returning host(inet_server_addr()) as addr`;
    const rows = await Promise.race([q, Bun.sleep(1000).then(() => { throw new Error("deadline"); })]);
    rec = { start, end: Date.now(), ok: true, addr: (rows as unknown as Array<{ addr: string }>)[0]?.addr ?? null };
  } catch (e) {
    rec = { start, end: Date.now(), ok: false, err: String((e as Error).message).slice(0, 200) };
    const old = sql;
    void old.end({ timeout: 0 }).catch(() => {});
    sql = connect();
  }
  appendFileSync(file, JSON.stringify(rec) + "\n");
  await Bun.sleep(Math.max(0, 50 - (Date.now() - start)));
}
await sql.end({ timeout: 0 }).catch(() => {});
process.exit(0);
