// The peer table (src/agent/peers.ts): what an announcement changes, and which mesh address a peer
// that moved left behind (the transport stops dialling it).
import { expect, test } from "bun:test";
import { PeerTable } from "../../src/agent/peers.ts";

const ann = (id: string, mesh: string) => ({ id, name: `n-${id}`, role: "database" as const, mesh, address: "", vote: null, member: false });

test("a peer that announces another mesh address leaves its old one, unless another peer announces it now", () => {
  const t = new PeerTable(5000);
  expect(t.seen(ann("a", "10.0.0.1:7401"))).toEqual({ isNew: true, left: null });
  expect(t.seen(ann("a", "10.0.0.1:7401"))).toEqual({ isNew: false, left: null });
  expect(t.seen(ann("a", "10.0.0.9:7401"))).toEqual({ isNew: false, left: "10.0.0.1:7401" }); // a new DHCP address
  expect(t.seen(ann("b", "10.0.0.1:7401"))).toEqual({ isNew: true, left: null }); // b got a's old address
  expect(t.seen(ann("a", "10.0.0.9:7402"))).toEqual({ isNew: false, left: "10.0.0.9:7401" });
  t.seen(ann("b", "10.0.0.9:7401"));
  expect(t.seen(ann("b", "10.0.0.5:7401"))).toEqual({ isNew: false, left: "10.0.0.9:7401" });
  t.seen(ann("c", "10.0.0.5:7401")); // c announces b's address (a wildcard mesh seen from one source)
  expect(t.seen(ann("b", "10.0.0.6:7401"))).toEqual({ isNew: false, left: null }); // c is there: still dialled
  expect(t.list().map((p) => [p.id, p.mesh])).toEqual([["a", "10.0.0.9:7402"], ["b", "10.0.0.6:7401"], ["c", "10.0.0.5:7401"]]);
});

test("a peer the mesh knew before its beacon (no address yet) leaves nothing when its beacon arrives", () => {
  const t = new PeerTable(5000);
  t.connected("a", true, "n-a");
  expect(t.seen(ann("a", "10.0.0.1:7401"))).toEqual({ isNew: false, left: null });
});
