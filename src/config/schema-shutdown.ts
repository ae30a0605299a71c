// [shutdown]: what the agent does when it is stopped (SIGTERM, SIGINT; docs/upgrade.md).
import { z } from "zod";

export const shutdownSection = () => z.strictObject({
  /** A leader hands leadership to a caught-up standby before it exits (`pgherd agent --no-handover` overrides). */
  handover: z.boolean("must be true or false").default(true),
});
