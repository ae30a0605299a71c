// Sentry envelope framing as the tests check it: a header line, an item header whose length is
// the payload's byte length, the event; the event's id matches the header's.
export interface Envelope { header: Record<string, unknown>; item: Record<string, unknown>; event: Record<string, any> }

export function parseEnvelope(body: string): Envelope {
  const lines = body.split("\n");
  if (lines.length !== 4 || lines[3] !== "") throw new Error(`an envelope has 3 newline-terminated lines, got ${JSON.stringify(body.slice(0, 200))}`);
  const [header, item, event] = lines.slice(0, 3).map((l) => JSON.parse(l)) as [Record<string, unknown>, Record<string, unknown>, Record<string, any>];
  const want = { type: "event", content_type: "application/json", length: Buffer.byteLength(lines[2]!) };
  if (JSON.stringify(item) !== JSON.stringify(want)) throw new Error(`item header ${JSON.stringify(item)}, expected ${JSON.stringify(want)}`);
  if (typeof header.event_id !== "string" || !/^[0-9a-f]{32}$/.test(header.event_id)) throw new Error(`bad event_id in ${JSON.stringify(header)}`);
  if (event.event_id !== header.event_id) throw new Error("the event's id differs from the envelope's");
  if (typeof header.sent_at !== "string" || Number.isNaN(Date.parse(header.sent_at))) throw new Error(`bad sent_at in ${JSON.stringify(header)}`);
  return { header, item, event };
}
