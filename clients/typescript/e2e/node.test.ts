// The client in Node.js 20 (with the `ws` package as its WebSocket) against the reference
// server: change feeds from the resource API, compare-and-set between two clients, and
// lossless resumption across a server restart on the same data directory.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { ChorusClient, ConflictError, type ChannelMessage, type DataChange, type Subscribed, type WebSocketConstructor } from "../src/index.js";

const repo = resolve(fileURLToPath(new URL("../../../../", import.meta.url)));
const bin = process.env.CHORUS_BIN ? resolve(process.env.CHORUS_BIN) : join(repo, "target/debug/chorus");
const dataDir = mkdtempSync(join(tmpdir(), "chorus-node-e2e-"));
const API_KEY = "e2e-api-key-0123456789";
let port = 0;
let server: ChildProcess | null = null;
const clients: ChorusClient[] = [];

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? res(a.port) : rej(new Error("no port"))));
    });
  });
}

/** Starts the server and resolves once its HTTP endpoint answers. */
async function startServer(): Promise<void> {
  server = spawn(bin, ["serve", "--dev", "--host", "127.0.0.1", "--port", String(port), "--data-dir", dataDir, "--api-key", API_KEY], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("server did not start");
}

function stopServer(): Promise<void> {
  const child = server;
  server = null;
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((res) => {
    child.once("exit", () => res());
    child.kill("SIGTERM");
  });
}

function b64url(s: string): string {
  return Buffer.from(s).toString("base64url");
}

/** An unsigned token: the server runs in development mode without a secret. */
function connect(sub: string): ChorusClient {
  const token = `${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url(JSON.stringify({ sub }))}.unsigned`;
  const c = new ChorusClient({ url: `ws://127.0.0.1:${port}/ws`, token, WebSocket: WebSocket as unknown as WebSocketConstructor });
  clients.push(c);
  return c;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

function next<T>(on: (fn: (v: T) => void) => () => void, pred: (v: T) => boolean = () => true, ms = 5000): Promise<T> {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      off();
      rej(new Error("timed out"));
    }, ms);
    const off = on((v) => {
      if (!pred(v)) return;
      clearTimeout(timer);
      off();
      res(v);
    });
  });
}

before(async () => {
  assert.ok(existsSync(bin), `no server binary at ${bin}: run \`cargo build -p chorus-cli\` or set CHORUS_BIN`);
  port = await freePort();
  await startServer();
});

after(async () => {
  for (const c of clients) c.close();
  await stopServer();
  rmSync(dataDir, { recursive: true, force: true });
});

test("a resource feed receives the changes of the resource API (subscribeToResource)", async () => {
  const c = connect("feed-user");
  const feed = c.resource("post");
  await feed.ready();
  const got = next<DataChange>((fn) => feed.onChange(fn));
  const res = await fetch(`http://127.0.0.1:${port}/api/resources/post`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": API_KEY },
    body: JSON.stringify({ id: "p1", title: "Hello" }),
  });
  assert.equal(res.status, 201);
  const change = await got;
  assert.equal(change.operation, "create");
  assert.equal(change.record_id, "p1");
  assert.deepEqual(change.data, { id: "p1", title: "Hello" });
});

test("compare-and-set: of two writes from the same version exactly one wins, the other sees a conflict", async () => {
  const a = connect("cas-a");
  const b = connect("cas-b");
  const sa = a.state("board");
  const sb = b.state("board");
  await Promise.all([sa.ready(), sb.ready()]);
  const v = sa.version!;
  assert.equal(sb.version, v);
  const results = await Promise.allSettled([
    sa.set("owner", "a", { expectedVersion: v }),
    sb.set("owner", "b", { expectedVersion: v }),
  ]);
  const won = results.filter((r) => r.status === "fulfilled");
  const lost = results.filter((r) => r.status === "rejected");
  assert.equal(won.length, 1);
  assert.equal(lost.length, 1);
  const err = (lost[0] as PromiseRejectedResult).reason;
  assert.ok(err instanceof ConflictError);
  assert.equal(err.current?.version, v + 1);
  // Both copies converge on the winner's value.
  for (const s of [sa, sb]) {
    if (s.version !== v + 1) await next<{ version: number }>((fn) => s.onChange(fn), (x) => x.version === v + 1);
  }
  assert.equal(sa.data.owner, sb.data.owner);
  // update() retries on the newer state: two concurrent increments both count.
  await Promise.all([sa.update("n", (x) => ((x as number) ?? 0) + 1), sb.update("n", (x) => ((x as number) ?? 0) + 1)]);
  for (const s of [sa, sb]) {
    if (s.data.n !== 2) await next<{ data: Record<string, unknown> }>((fn) => s.onChange(fn), (x) => x.data.n === 2);
  }
});

test("after a server restart on its data directory the client resumes with since: nothing lost, nothing doubled", async () => {
  const reader = connect("reader");
  const writer = connect("writer");
  const chat = reader.channel("room-chat");
  const seen: number[] = [];
  const resets: unknown[] = [];
  chat.onMessage((m: ChannelMessage) => seen.push(m.seq));
  chat.onReset((r) => resets.push(r));
  await chat.subscribe();
  const out = writer.channel("room-chat");
  await out.subscribe();
  for (let i = 0; i < 3; i++) await out.publish("note", { i });
  await until(() => seen.length >= 3);
  assert.deepEqual(seen, [1, 2, 3]);
  const before = chat.position;
  await stopServer();
  await startServer();
  // The writer reconnects and publishes; the reader's resubscribe (since = seq 3) recovers
  // whatever it missed and then gets the rest live.
  const resubscribed = next<Subscribed>((fn) => chat.onSubscribed(fn), () => true, 15000);
  for (let i = 3; i < 6; i++) await out.publish("note", { i });
  const sub = await resubscribed;
  assert.equal(sub.position.epoch, before!.epoch, "the stream kept its epoch across the restart");
  assert.equal(sub.recovered, true);
  await until(() => seen.length >= 6);
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(resets, []);
});
