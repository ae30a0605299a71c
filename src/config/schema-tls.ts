// [postgres] keys of replication TLS (src/tls): on by default; plain replication only when an
// operator writes replication_tls = false (the agent warns at every start).
import { z } from "zod";

export const postgresTlsKeys = () => ({
  /**
   * true (default): ssl = on with a certificate from the cluster CA, hostssl rows for pgherd's
   * roles, and every replication, clone and rewind connection verify-full with channel binding.
   */
  replication_tls: z.boolean().default(true),
});
