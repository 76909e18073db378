import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { ChorusClient, ConflictError, UnknownOutcomeError, backoffWindow, reactionTo } from "../src/index.js";
import type { ClientOptions, WebSocketConstructor } from "../src/index.js";
import { FakeClock, FakeSocket, flush, member, welcome } from "./fake.js";

let clock: FakeClock;
beforeEach(() => {
  FakeSocket.all = [];
  clock = new FakeClock();
});

async function connected(
  opts: Partial<ClientOptions> = {},
  w: Record<string, unknown> = {},
): Promise<{ client: ChorusClient; ws: FakeSocket }> {
  const client = new ChorusClient({
    url: "ws://test/ws",
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
    clock,
    random: () => 0.5,
    ...opts,
  });
  await flush();
  const ws = FakeSocket.all.at(-1)!;
  ws.push(welcome(w));
  return { client, ws };
}

function reply(ws: FakeSocket, type: string, frame: Record<string, unknown>): void {
  const req = ws.last(type);
  if (!req) throw new Error(`no ${type} sent`);
  ws.push({ ...frame, id: req.id });
}

test("close codes map to the reactions of spec/client.md", () => {
  assert.equal(reactionTo(1000, true), "none");
  assert.equal(reactionTo(1000, false), "stop");
  for (const c of [4000, 4001, 4003, 4099, 1002, 1003, 1007, 1009]) assert.equal(reactionTo(c, false), "stop", `${c}`);
  for (const c of [4100, 4150, 4199]) assert.equal(reactionTo(c, false), "refresh", `${c}`);
  for (const c of [4200, 4202, 4299, 4400, 4999, 1001, 1011, 1006, 3000, 4500]) {
    assert.equal(reactionTo(c, false), "backoff", `${c}`);
  }
  for (const c of [4300, 4301, 4399]) assert.equal(reactionTo(c, false), "immediate", `${c}`);
});

test("the backoff window doubles from 1 s and caps at 30 s (CLIENT-3)", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 40].map(backoffWindow), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

test("uses the subprotocol and passes the token in the query", async () => {
  const { ws } = await connected({ token: "a b" });
  assert.equal(ws.protocols, "chorus.v1");
  assert.equal(ws.url, "ws://test/ws?token=a%20b");
});

test("tokenIn: header sends Authorization: Bearer and keeps the URL clean (SEC-4)", async () => {
  const { ws } = await connected({ token: "tok", tokenIn: "header" });
  assert.equal(ws.url, "ws://test/ws");
  assert.deepEqual(ws.options, { headers: { Authorization: "Bearer tok" } });
});

test("an upgrade refused with 403 stops; with 503 it backs off (CLIENT-5, CLIENT-7)", async () => {
  const { client, ws } = await connected();
  ws.drop(1006);
  clock.advance(1000);
  await flush();
  const refused503 = FakeSocket.all.at(-1)!;
  refused503.onerror?.({ message: "Unexpected server response: 503" });
  refused503.drop(1006);
  assert.equal(client.status, "waiting");
  clock.advance(2000);
  await flush();
  const refused403 = FakeSocket.all.at(-1)!;
  assert.notEqual(refused403, refused503);
  let stopped: number | null = null;
  client.events.on("stopped", (s) => (stopped = s.code));
  refused403.onerror?.({ message: "Unexpected server response: 403" });
  refused403.drop(1006);
  assert.equal(client.status, "stopped");
  assert.equal(stopped, 403);
});

test("requests wait for welcome (CLIENT-1) and get unique ids (CLIENT-2)", async () => {
  const client = new ChorusClient({ url: "ws://t/ws", WebSocket: FakeSocket as unknown as WebSocketConstructor, clock });
  const ch = client.channel("chat");
  void ch.subscribe();
  const sent = ch.publish("say", { text: "hi" });
  await flush();
  const ws = FakeSocket.all[0]!;
  assert.equal(ws.sent.length, 0);
  ws.push(welcome());
  assert.deepEqual(ws.sent.map((f) => f.type), ["subscribe", "broadcast"]);
  assert.notEqual(ws.sent[0]!.id, ws.sent[1]!.id);
  reply(ws, "subscribe", { type: "subscribed", channel: "chat", kind: "public", position: { epoch: "e1", seq: 0 } });
  reply(ws, "broadcast", { type: "broadcast:ack", channel: "chat", seq: 1, ts: 5 });
  assert.equal((await sent).seq, 1);
});

test("full-jitter backoff grows until a connection stayed open 30 s (CLIENT-3, CLIENT-4)", async () => {
  const delays: number[] = [];
  const { client, ws } = await connected({ random: () => 0.999 });
  client.events.on("disconnect", (d) => delays.push(d.delayMs));
  ws.drop(1006);
  for (let i = 0; i < 6; i++) {
    clock.advance(delays.at(-1)!);
    await flush();
    const s = FakeSocket.all.at(-1)!;
    s.push(welcome());
    s.drop(4202); // accepted and closed at once: not stable
  }
  assert.deepEqual(delays, [999, 1998, 3996, 7992, 15984, 29970, 29970]);
  clock.advance(delays.at(-1)!);
  await flush();
  const s = FakeSocket.all.at(-1)!;
  s.push(welcome());
  clock.advance(30000);
  s.drop(1001);
  assert.equal(delays.at(-1), 999);
});

test("terminal close codes stop the client (CLIENT-5)", async () => {
  const { client, ws } = await connected();
  let stopped: number | null = null;
  client.events.on("stopped", (s) => (stopped = s.code));
  ws.drop(4001);
  clock.advance(60000);
  await flush();
  assert.equal(stopped, 4001);
  assert.equal(client.status, "stopped");
  assert.equal(FakeSocket.all.length, 1);
});

test("4100 asks the provider for a new token, never reuses the expired one (CLIENT-6)", async () => {
  const reasons: string[] = [];
  let n = 0;
  const { client, ws } = await connected({
    token: (r) => {
      reasons.push(r);
      return r === "expired" && n++ > 0 ? "t1" : n === 0 ? "t0" : "t1";
    },
  });
  ws.drop(4100);
  await flush();
  assert.equal(FakeSocket.all.length, 2);
  assert.match(FakeSocket.all[1]!.url, /token=t1/);
  // The provider has nothing new: same token again -> stop.
  const { client: c2, ws: w2 } = await connected({ token: "fixed" });
  w2.drop(4100);
  await flush();
  assert.equal(c2.status, "stopped");
  assert.deepEqual(reasons.slice(0, 2), ["connect", "expired"]);
  client.close();
});

test("4300 reconnects at once (CLIENT-8)", async () => {
  const { ws } = await connected();
  ws.drop(4301);
  await flush();
  assert.equal(FakeSocket.all.length, 2);
});

test("pings after interval_ms of silence and reconnects when nothing arrives for timeout_ms (CLIENT-14, CLIENT-15)", async () => {
  const { ws } = await connected({}, { heartbeat: { interval_ms: 1000, timeout_ms: 3000 } });
  clock.advance(1000);
  assert.equal(ws.ofType("ping").length, 1);
  ws.push({ type: "pong", ts: 1, id: ws.last("ping")!.id });
  clock.advance(1000);
  assert.equal(ws.ofType("ping").length, 2);
  clock.advance(1000);
  assert.equal(FakeSocket.all.length, 1, "not dead yet: a pong arrived 2 s ago");
  clock.advance(1000);
  assert.notEqual(ws.closedWith, null, "closed the dead connection");
  await flush();
  assert.equal(FakeSocket.all.length, 2, "reconnected at once");
});

test("sends auth:refresh at 80% of the token's remaining life (CLIENT-16)", async () => {
  let k = 0;
  const { ws } = await connected(
    { token: () => `tok${k++}` },
    { expires_at: clock.now() + 100_000, heartbeat: { interval_ms: 500_000, timeout_ms: 1_000_000 } },
  );
  clock.advance(79_000);
  await flush();
  assert.equal(ws.ofType("auth:refresh").length, 0);
  clock.advance(1_000);
  await flush();
  assert.equal(ws.last("auth:refresh")!.token, "tok1");
  reply(ws, "auth:refresh", { type: "auth:refreshed", expires_at: clock.now() + 10_000 });
  clock.advance(8_000);
  await flush();
  assert.equal(ws.ofType("auth:refresh").length, 2);
});

test("ignores unknown frames, unknown members, non-JSON and binary data (TRANS-27)", async () => {
  const { client, ws } = await connected();
  const ch = client.channel("chat");
  const got: unknown[] = [];
  ch.onMessage((m) => got.push(m.data));
  void ch.subscribe();
  reply(ws, "subscribe", { type: "subscribed", channel: "chat", kind: "public", position: { epoch: "e", seq: 0 }, shiny: 1 });
  ws.push({ type: "future:thing", x: 1 });
  ws.push("not json");
  ws.push("[1,2]");
  ws.onmessage?.({ data: new Uint8Array([1]) });
  ws.push({ type: "message", channel: "chat", event: "e", data: { a: 1 }, ts: 1, seq: 1, brand_new: true });
  assert.deepEqual(got, [{ a: 1 }]);
  assert.equal(client.status, "open");
});

test("resubscribes with since after a reconnect and drops duplicates (CLIENT-10, CLIENT-11)", async () => {
  const { client, ws } = await connected();
  const ch = client.channel("chat");
  const seqs: number[] = [];
  ch.onMessage((m) => seqs.push(m.seq));
  void ch.subscribe();
  reply(ws, "subscribe", { type: "subscribed", channel: "chat", kind: "public", position: { epoch: "e1", seq: 10 } });
  for (const seq of [11, 12]) ws.push({ type: "message", channel: "chat", event: "m", data: {}, ts: 1, seq });
  void ch.publish("m", {});
  reply(ws, "broadcast", { type: "broadcast:ack", channel: "chat", seq: 13, ts: 1 });
  ws.drop(1006);
  clock.advance(1000);
  await flush();
  const ws2 = FakeSocket.all[1]!;
  ws2.push(welcome());
  const sub = ws2.last("subscribe")!;
  assert.deepEqual(sub.since, { epoch: "e1", seq: 13 });
  ws2.push({ type: "subscribed", id: sub.id, channel: "chat", kind: "public", position: { epoch: "e1", seq: 15 }, recovered: true });
  for (const seq of [12, 14, 15]) ws2.push({ type: "message", channel: "chat", event: "m", data: {}, ts: 1, seq });
  assert.deepEqual(seqs, [11, 12, 14, 15]);
});

test("a new epoch or recovered:false resets the channel (CLIENT-12)", async () => {
  const { client, ws } = await connected();
  const ch = client.channel("chat");
  const resets: unknown[] = [];
  ch.onReset((r) => resets.push(r));
  void ch.subscribe();
  reply(ws, "subscribe", { type: "subscribed", channel: "chat", kind: "public", position: { epoch: "e1", seq: 3 } });
  ws.drop(1001);
  clock.advance(1000);
  await flush();
  const ws2 = FakeSocket.all[1]!;
  ws2.push(welcome());
  reply(ws2, "subscribe", { type: "subscribed", channel: "chat", kind: "public", position: { epoch: "e2", seq: 0 }, recovered: false });
  assert.deepEqual(resets, [{ epoch: "e2", previousEpoch: "e1", recovered: false }]);
  assert.deepEqual(ch.position, { epoch: "e2", seq: 0 });
});

test("no since without the recovery capability", async () => {
  const { client, ws } = await connected({}, { capabilities: [] });
  void client.channel("c").subscribe();
  reply(ws, "subscribe", { type: "subscribed", channel: "c", kind: "public", position: { epoch: "e", seq: 3 } });
  ws.drop(1006);
  clock.advance(1000);
  await flush();
  FakeSocket.all[1]!.push(welcome({ capabilities: [] }));
  assert.equal(FakeSocket.all[1]!.last("subscribe")!.since, undefined);
});

test("a request in flight when the connection drops has an unknown outcome (CLIENT-18)", async () => {
  const { client, ws } = await connected();
  const ch = client.channel("c");
  const p = ch.publish("e", {});
  ws.drop(1006);
  await assert.rejects(p, UnknownOutcomeError);
});

test("presence: one member per user, left removes the cursor (PRES-1, CURS-19)", async () => {
  const { client, ws } = await connected();
  const presence = client.presence("presence-room");
  const cursors = client.cursors("presence-room");
  reply(ws, "subscribe", {
    type: "subscribed",
    channel: "presence-room",
    kind: "presence",
    position: { epoch: "e", seq: 0 },
    presence: [member("alice"), member("bob")],
    cursors: [{ user_id: "bob", x: 1, y: 2, ts: 1 }],
  });
  assert.equal(ws.ofType("subscribe").length, 1, "one subscribe for presence and cursors");
  assert.equal(presence.count, 2);
  assert.equal(presence.me?.user_id, "alice");
  assert.deepEqual(presence.others().map((m) => m.user_id), ["bob"]);
  ws.push({ type: "presence:updated", channel: "presence-room", member: member("bob", "away") });
  assert.equal(presence.members.get("bob")?.status, "away");
  ws.push({ type: "cursor:moved", channel: "presence-room", cursors: [{ user_id: "bob", x: 5, y: 6, ts: 2 }] });
  assert.equal(cursors.all.get("bob")?.x, 5);
  ws.push({ type: "user:left", channel: "presence-room", user_id: "bob", last_seen: 3 });
  assert.equal(presence.count, 1);
  assert.equal(cursors.all.size, 0);
});

test("cursor updates are throttled to cursor_interval_ms, latest position last (CURS-18)", async () => {
  const { client, ws } = await connected({}, { limits: { ...(welcome().limits as object), cursor_interval_ms: 100 } });
  const cursors = client.cursors("presence-r");
  reply(ws, "subscribe", { type: "subscribed", channel: "presence-r", kind: "presence", position: { epoch: "e", seq: 0 }, presence: [] });
  cursors.move(1, 1);
  cursors.move(2, 2);
  cursors.move(3, 3);
  assert.deepEqual(ws.ofType("cursor:update").map((f) => f.x), [1]);
  clock.advance(99);
  assert.equal(ws.ofType("cursor:update").length, 1);
  clock.advance(1);
  assert.deepEqual(ws.ofType("cursor:update").map((f) => f.x), [1, 3]);
  clock.advance(1000);
  assert.equal(ws.ofType("cursor:update").length, 2);
  cursors.move(4, 4);
  assert.equal(ws.ofType("cursor:update").length, 3);
});

test("shared state: snapshot, ordered updates, gap -> sync, epoch change -> sync (STATE-28, STATE-29)", async () => {
  const { client, ws } = await connected();
  const state = client.state("doc");
  const sub = ws.last("subscribe")!;
  assert.equal(sub.state, true);
  ws.push({ type: "subscribed", id: sub.id, channel: "doc", kind: "public", position: { epoch: "e1", seq: 0 }, state: { data: { a: 1 }, version: 4, epoch: "e1" } });
  assert.equal(state.version, 4);
  ws.push({ type: "state:update", channel: "doc", key: "b", value: 2, version: 5, epoch: "e1", ts: 1 });
  ws.push({ type: "state:update", channel: "doc", key: "b", value: 9, version: 5, epoch: "e1", ts: 1 });
  ws.push({ type: "state:merge", channel: "doc", data: { c: 3 }, version: 6, epoch: "e1", ts: 1 });
  ws.push({ type: "state:delete", channel: "doc", key: "a", version: 7, epoch: "e1", ts: 1 });
  assert.deepEqual(state.data, { b: 2, c: 3 });
  ws.push({ type: "state:update", channel: "doc", key: "z", value: 0, version: 9, epoch: "e1", ts: 1 });
  assert.equal(ws.ofType("state:sync:request").length, 1);
  reply(ws, "state:sync:request", { type: "state:sync", channel: "doc", data: { z: 0 }, version: 9, epoch: "e1" });
  assert.deepEqual(state.data, { z: 0 });
  ws.push({ type: "state:update", channel: "doc", key: "q", value: 0, version: 1, epoch: "e2", ts: 1 });
  assert.equal(ws.ofType("state:sync:request").length, 2);
  // After a reconnect the held version is void until a fresh snapshot (CLIENT-13).
  ws.drop(1006);
  assert.equal(state.version, null);
  clock.advance(1000);
  await flush();
  const ws2 = FakeSocket.all[1]!;
  ws2.push(welcome());
  assert.equal(ws2.last("subscribe")!.state, true);
});

test("compare-and-set conflicts are surfaced and update() retries on the newer state (STATE-19, STATE-31)", async () => {
  const { client, ws } = await connected();
  const state = client.state("doc");
  reply(ws, "subscribe", { type: "subscribed", channel: "doc", kind: "public", position: { epoch: "e", seq: 0 }, state: { data: { n: 1 }, version: 1, epoch: "e" } });
  const conflicts: ConflictError[] = [];
  state.onConflict((c) => conflicts.push(c));
  // A plain CAS write that loses.
  const lost = state.set("n", 5, { expectedVersion: "current" });
  assert.equal(ws.last("state:update")!.expected_version, 1);
  reply(ws, "state:update", { type: "error", code: "conflict", message: "x", channel: "doc", current: { version: 2, epoch: "e" } });
  await assert.rejects(lost, ConflictError);
  // A read-modify-write that retries after the concurrent write arrives.
  const done = state.update("n", (v) => (v as number) + 1);
  await flush();
  assert.equal(ws.last("state:update")!.expected_version, 1);
  assert.equal(ws.last("state:update")!.value, 2);
  reply(ws, "state:update", { type: "error", code: "conflict", message: "x", channel: "doc", current: { version: 2, epoch: "e" } });
  ws.push({ type: "state:update", channel: "doc", key: "n", value: 10, version: 2, epoch: "e", ts: 1 });
  await flush();
  assert.equal(ws.last("state:update")!.expected_version, 2);
  assert.equal(ws.last("state:update")!.value, 11);
  reply(ws, "state:update", { type: "state:ack", channel: "doc", version: 3, epoch: "e" });
  assert.equal((await done)!.version, 3);
  assert.equal(conflicts.length, 2);
  assert.equal(conflicts[0]!.current?.version, 2);
});

test("resource feeds subscribe to resource:{name} and resource:{name}:{id} (CHG-21)", async () => {
  const { client, ws } = await connected();
  const feed = client.resource("post");
  const one = client.resource("post", "7");
  const changes: string[] = [];
  feed.onChange((c) => changes.push(`${c.operation}:${c.record_id}`));
  assert.deepEqual(ws.ofType("subscribe").map((f) => f.channel), ["resource:post", "resource:post:7"]);
  reply(ws, "subscribe", { type: "subscribed", channel: "resource:post:7", kind: "public", position: { epoch: "e", seq: 0 } });
  ws.push({ type: "subscribed", id: ws.ofType("subscribe")[0]!.id, channel: "resource:post", kind: "public", position: { epoch: "e", seq: 0 } });
  ws.push({ type: "data_change", channel: "resource:post", operation: "create", resource: "post", record_id: "7", data: { id: "7" }, ts: 1, seq: 1 });
  assert.deepEqual(changes, ["create:7"]);
  assert.equal(one.channel, "resource:post:7");
});

test("rate_limited holds broadcasts for retry_after_ms (CLIENT-17)", async () => {
  const { client, ws } = await connected();
  const ch = client.channel("c");
  const first = ch.publish("e", {});
  reply(ws, "broadcast", { type: "error", code: "rate_limited", message: "slow", retry_after_ms: 500 });
  await assert.rejects(first);
  void ch.publish("e", {});
  assert.equal(ws.ofType("broadcast").length, 1);
  clock.advance(500);
  assert.equal(ws.ofType("broadcast").length, 2);
});

test("an unsolicited unsubscribed is not undone by a reconnect (CLIENT-10)", async () => {
  const { client, ws } = await connected();
  const ch = client.channel("private-x");
  void ch.subscribe().catch(() => undefined);
  reply(ws, "subscribe", { type: "subscribed", channel: "private-x", kind: "private", position: { epoch: "e", seq: 0 } });
  ws.push({ type: "unsubscribed", channel: "private-x", reason: "forbidden" });
  ws.drop(1006);
  clock.advance(1000);
  await flush();
  FakeSocket.all[1]!.push(welcome());
  assert.equal(FakeSocket.all[1]!.ofType("subscribe").length, 0);
});

test("close() ends with 1000 and does not reconnect (CLIENT-9)", async () => {
  const { client, ws } = await connected();
  client.close();
  assert.equal(ws.closedWith, 1000);
  clock.advance(100000);
  await flush();
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(client.status, "closed");
});

test("frames over max_frame_bytes or max_json_depth are refused locally (LIMIT-4)", async () => {
  const limits = { ...(welcome().limits as object), max_frame_bytes: 200, max_json_depth: 4 };
  const { client, ws } = await connected({}, { limits });
  const ch = client.channel("c");
  await assert.rejects(ch.publish("e", { text: "x".repeat(300) }), (e: unknown) => (e as { code?: string }).code === "limit_exceeded");
  await assert.rejects(ch.publish("e", { a: { b: { c: {} } } }), (e: unknown) => (e as { code?: string }).code === "invalid_json");
  const ok = ch.publish("e", { a: { b: 1 } });
  assert.equal(ws.ofType("broadcast").length, 1, "only the frame within the limits left");
  reply(ws, "broadcast", { type: "broadcast:ack", channel: "c", seq: 1, ts: 1 });
  await ok;
  assert.equal(client.status, "open");
});

test("requests of a capability the server did not announce are refused locally (VER-10)", async () => {
  const { client, ws } = await connected({}, { capabilities: ["presence"] });
  const ch = client.channel("c");
  await assert.rejects(ch.history({ limit: 10 }), (e: unknown) => (e as { code?: string }).code === "unsupported");
  const st = client.state("doc");
  await assert.rejects(st.set("k", 1), (e: unknown) => (e as { code?: string }).code === "unsupported");
  assert.equal(ws.ofType("history").length + ws.ofType("state:update").length, 0);
  // Presence is announced: its requests leave.
  void client.presence("presence-r").update({ status: "away" });
  assert.equal(ws.ofType("presence:update").length, 1);
});
