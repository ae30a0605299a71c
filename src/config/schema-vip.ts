// [vip]: a virtual IP address that follows the leader lease (docs/vip.md). Own zod object;
// schema.ts only references it.
import { isIPv4 } from "node:net";
import { z } from "zod";

const cidr4 = (v: string) => {
  const [ip, prefix, ...rest] = v.split("/");
  return rest.length === 0 && !!ip && isIPv4(ip) && /^\d{1,2}$/.test(prefix ?? "") && Number(prefix) >= 1 && Number(prefix) <= 32;
};

export const vipSection = () => z
  .strictObject({
    /** "10.0.0.50/24": added by the lease holder, removed when the lease lapses. "" = no virtual IP. */
    address: z.string().refine((v) => v === "" || cidr4(v), 'must be an IPv4 address with its prefix length ("10.0.0.50/24"), or ""').default(""),
    /** The network interface it goes on ("eth0"). */
    interface: z.string().regex(/^([A-Za-z0-9_.-]{1,15})?$/, "must be a network interface name (1-15 letters, digits, _ . -)").default(""),
  })
  .superRefine((v, ctx) => {
    if (v.address && !v.interface) ctx.addIssue({ code: "custom", path: ["interface"], message: "is required with vip.address" });
  });
