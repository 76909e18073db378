import { test } from "node:test";
import assert from "node:assert/strict";
import { ChorusClient, type WebSocketConstructor } from "../src/index.js";
import { bindReact, type ReactLike } from "../src/react.js";
import { FakeClock, FakeSocket, flush, member, welcome } from "./fake.js";

/** Just enough of React to run the hooks outside a renderer: one component, re-run by hand. */
function fakeReact() {
  const memo: unknown[] = [];
  const subs: Array<() => void> = [];
  let slot = 0;
  let renders = 0;
  const React: ReactLike = {
    useMemo<T>(make: () => T): T {
      const i = slot++;
      if (!(i in memo)) memo[i] = make();
      return memo[i] as T;
    },
    useSyncExternalStore<T>(subscribe: (cb: () => void) => () => void, get: () => T): T {
      const i = slot++;
      if (!(i in memo)) {
        memo[i] = true;
        subs.push(subscribe(() => renders++));
      }
      return get();
    },
    useEffect(effect: () => void | (() => void)): void {
      const i = slot++;
      if (!(i in memo)) memo[i] = effect() ?? true;
    },
  };
  return { React, render<T>(fn: () => T): T { slot = 0; return fn(); }, renders: () => renders };
}

test("React hooks: usePresence, useCursors and useSharedState follow the client's views", async () => {
  FakeSocket.all = [];
  const client = new ChorusClient({ url: "ws://t/ws", WebSocket: FakeSocket as unknown as WebSocketConstructor, clock: new FakeClock() });
  await flush();
  const ws = FakeSocket.all[0]!;
  ws.push(welcome());
  const r = fakeReact();
  const hooks = bindReact(r.React);
  const view = () => ({
    p: hooks.usePresence(client, "presence-r"),
    c: hooks.useCursors(client, "presence-r"),
    s: hooks.useSharedState(client, "doc"),
  });
  let v = r.render(view);
  assert.equal(v.p.members.size, 0);
  const subs = ws.ofType("subscribe");
  assert.deepEqual(subs.map((f) => f.channel).sort(), ["doc", "presence-r"]);
  const sub = (ch: string) => subs.find((f) => f.channel === ch)!.id;
  ws.push({ type: "subscribed", id: sub("presence-r"), channel: "presence-r", kind: "presence", position: { epoch: "e", seq: 0 }, presence: [member("alice"), member("bob")], cursors: [{ user_id: "bob", x: 3, y: 4, ts: 1 }] });
  ws.push({ type: "subscribed", id: sub("doc"), channel: "doc", kind: "public", position: { epoch: "e", seq: 0 }, state: { data: { t: 1 }, version: 2, epoch: "e" } });
  assert.ok(r.renders() >= 3, "each view change asks for a render");
  v = r.render(view);
  assert.deepEqual(v.p.others.map((m) => m.user_id), ["bob"]);
  assert.deepEqual(v.c.cursors.map((c) => [c.user_id, c.x, c.y]), [["bob", 3, 4]]);
  assert.deepEqual([v.s.data, v.s.version], [{ t: 1 }, 2]);
  ws.push({ type: "user:left", channel: "presence-r", user_id: "bob", last_seen: 1 });
  v = r.render(view);
  assert.equal(v.p.members.size, 1);
  assert.equal(v.c.cursors.length, 0);
  client.close();
});
