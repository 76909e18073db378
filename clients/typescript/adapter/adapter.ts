// The `chorus conform-client` adapter of @chorus-rt/client (conformance/CLIENT-DRIVER.md):
// JSON lines on stdin are commands, JSON lines on stdout are what the library reported.
// It keeps no protocol state of its own: positions, members, cursors and state views all
// come from the library.
//
//   chorus conform-client --adapter 'node clients/typescript/build/adapter/adapter.js'
import { createInterface } from "node:readline";
import { WebSocket } from "ws";
import {
  ChorusClient,
  ChorusError,
  ConflictError,
  UnknownOutcomeError,
  type Channel,
  type Cursors,
  type Presence,
  type SharedState,
  type SubscribeOptions,
  type WebSocketConstructor,
} from "../src/index.js";

type Json = Record<string, unknown>;

function emit(event: Json): void {
  process.stdout.write(JSON.stringify(event) + "\n");
}

/**
 * Views (`members`, `cursors`, `state_view`) are whole snapshots: the latest per channel is
 * written once the current turn of the event loop is over, so that one server frame that
 * both settles a command and changes a view reports the `result` first, then the view.
 */
const views = new Map<string, Json>();
let viewsScheduled = false;
function view(event: Json): void {
  views.set(`${String(event.event)}\u0000${String(event.channel)}`, event);
  if (viewsScheduled) return;
  viewsScheduled = true;
  setImmediate(() => {
    viewsScheduled = false;
    const pending = [...views.values()];
    views.clear();
    for (const v of pending) emit(v);
  });
}

const VERSION = "0.1.0";
let client: ChorusClient | null = null;
let firstToken: string | null = null;
let tokenRequests = 0;
const waitingTokens = new Map<string, (token: string | null) => void>();

interface Handles {
  channel: Channel;
  presence?: Presence;
  cursors?: Cursors;
  state?: SharedState;
  offs: Array<() => void>;
}
const channels = new Map<string, Handles>();

/** The token provider: the first token from `connect`, every later one from the suite. */
function provideToken(reason: "connect" | "expired" | "refresh"): string | null | Promise<string | null> {
  if (reason === "connect") return firstToken;
  const request = `t${++tokenRequests}`;
  return new Promise((resolve) => {
    waitingTokens.set(request, (token) => {
      if (token !== null) firstToken = token; // later reconnects use the newest token
      resolve(token);
    });
    emit({ event: "token_request", request });
  });
}

function connect(url: string): ChorusClient {
  const c = new ChorusClient({
    url,
    token: provideToken,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    tokenIn: "header", // Node can set headers: keep the token out of the URL (SEC-4)
    autoConnect: false,
  });
  c.events.on("status", (s) => {
    if (s === "connecting" || s === "open" || s === "closed") emit({ event: "connection", state: s });
  });
  c.events.on("disconnect", (d) => {
    if (d.reaction === "backoff") {
      emit({ event: "connection", state: "waiting", code: d.code, delay_ms: d.delayMs, attempt: d.attempt });
    } else if (d.reaction !== "stop") {
      emit({ event: "connection", state: "waiting", code: d.code, delay_ms: 0 });
    }
  });
  c.events.on("stopped", (s) => emit({ event: "connection", state: "stopped", code: s.code }));
  c.events.on("error", (e) => {
    const ev: Json = { event: "error", code: e.code };
    if (e.frame.channel) ev.channel = e.frame.channel;
    emit(ev);
  });
  c.connect();
  return c;
}

/** The library's handles of a channel; `opts` apply to its first subscribe. */
function handles(c: ChorusClient, name: string, wantState: boolean, opts?: SubscribeOptions): Handles {
  let h = channels.get(name);
  if (wantState && !h?.state) {
    // First, so that the subscribe asks for the snapshot (or a resync follows).
    const state = c.state(name, opts);
    h = h ?? { channel: c.channel(name), offs: [] };
    h.state = state;
    h.offs.push(
      state.onChange((s) => view({ event: "state_view", channel: name, epoch: s.epoch, version: s.version, data: s.data })),
    );
  }
  if (!h || !channels.has(name)) {
    h = h ?? { channel: c.channel(name), offs: [] };
    const channel = h.channel;
    channels.set(name, h);
    h.offs.push(
      channel.onSubscribed((s) => {
        const ev: Json = { event: "subscribed", channel: name, position: s.position };
        if (typeof s.recovered === "boolean") ev.recovered = s.recovered;
        emit(ev);
      }),
      channel.onReset(() => emit({ event: "stale", channel: name })),
      channel.onUnsubscribed((u) => {
        const ev: Json = { event: "unsubscribed", channel: name };
        if (u.reason !== null) ev.reason = u.reason;
        emit(ev);
      }),
      channel.onMessage((m) => emit(messageEvent(m as unknown as Json))),
    );
    h.offs.push(channel.onDataChange((d) => emit(messageEvent(d as unknown as Json))));
    if (name.startsWith("presence-")) {
      const presence = c.presence(name, opts);
      const cursors = c.cursors(name);
      h.presence = presence;
      h.cursors = cursors;
      h.offs.push(
        presence.onChange((members) =>
          view({
            event: "members",
            channel: name,
            members: [...members.values()].map((m) => ({ user_id: m.user_id, status: m.status, data: m.data })),
          }),
        ),
        cursors.onChange((all) =>
          view({
            event: "cursors",
            channel: name,
            cursors: [...all.values()].map((cur) => ({ user_id: cur.user_id, x: cur.x, y: cur.y })),
          }),
        ),
      );
    }
  }
  return h;
}

function messageEvent(m: Json): Json {
  const ev: Json = {
    event: "message",
    channel: m.channel,
    name: m.type === "data_change" ? "data_change" : m.event,
    data: m.data,
  };
  if (typeof m.from === "string") ev.from = m.from;
  if (typeof m.seq === "number") ev.seq = m.seq;
  return ev;
}

/** The `result` of a command whose library call settled with `err` (or succeeded). */
function failure(ref: string, err: unknown): Json {
  if (err instanceof ConflictError) {
    const ev: Json = { event: "result", ref, outcome: "error", code: err.code };
    if (err.current) ev.version = err.current.version;
    return ev;
  }
  if (err instanceof ChorusError) return { event: "result", ref, outcome: "error", code: err.code };
  if (err instanceof UnknownOutcomeError) return { event: "result", ref, outcome: "unknown" };
  return { event: "result", ref, outcome: "error", code: "client", message: String(err) };
}

function settle(ref: string, p: Promise<Json | void>): void {
  p.then(
    (extra) => emit({ event: "result", ref, outcome: "ok", ...(extra ?? {}) }),
    (err: unknown) => emit(failure(ref, err)),
  );
}

function need(): ChorusClient {
  if (!client) throw new Error("not connected");
  return client;
}

/** The state handle of a channel, without subscribing when the suite did not ask to. */
function stateOf(channel: string): SharedState {
  return channels.get(channel)?.state ?? need().state(channel, { subscribe: false });
}

function run(cmd: Json): void {
  const ref = String(cmd.ref ?? "");
  const channel = String(cmd.channel ?? "");
  const versioned = (p: Promise<{ version: number }>) => p.then((ack) => ({ version: ack.version }));
  const cas = cmd.expected_version === undefined ? undefined : { expectedVersion: cmd.expected_version as number };
  switch (cmd.cmd) {
    case "connect":
      firstToken = typeof cmd.token === "string" ? cmd.token : null;
      client = connect(String(cmd.url));
      return emit({ event: "result", ref, outcome: "ok" });
    case "subscribe": {
      const opts: SubscribeOptions = {};
      if (cmd.since) opts.since = cmd.since as SubscribeOptions["since"];
      if (cmd.presence) opts.presence = cmd.presence as SubscribeOptions["presence"];
      const h = handles(need(), channel, cmd.state === true, opts);
      return settle(ref, h.channel.subscribe(opts));
    }
    case "unsubscribe": {
      const h = channels.get(channel) ?? handles(need(), channel, false);
      channels.delete(channel);
      h.offs.forEach((off) => off());
      return settle(ref, h.channel.unsubscribe());
    }
    case "publish": {
      const opts = typeof cmd.echo === "boolean" ? { echo: cmd.echo } : undefined;
      return settle(ref, need().channel(channel).publish(String(cmd.event), cmd.data as Json, opts).then(() => undefined));
    }
    case "presence_update": {
      const change: Json = {};
      if (cmd.status !== undefined) change.status = cmd.status;
      if (cmd.data !== undefined) change.data = cmd.data;
      return settle(ref, (channels.get(channel)?.presence ?? need().presence(channel, { subscribe: false })).update(change));
    }
    case "state_set":
      return settle(ref, versioned(stateOf(channel).set(String(cmd.key), cmd.value, cas)));
    case "state_merge":
      return settle(ref, versioned(stateOf(channel).merge(cmd.data as Json, cas)));
    case "state_delete":
      return settle(ref, versioned(stateOf(channel).delete(String(cmd.key), cas)));
    case "cursor_update":
      (channels.get(channel)?.cursors ?? need().cursors(channel, { subscribe: false })).move(Number(cmd.x), Number(cmd.y), cmd.data as Json | undefined);
      return emit({ event: "result", ref, outcome: "ok" });
    case "history": {
      const opts: { limit?: number; beforeSeq?: number } = {};
      if (typeof cmd.limit === "number") opts.limit = cmd.limit;
      if (typeof cmd.before_seq === "number") opts.beforeSeq = cmd.before_seq;
      return settle(
        ref,
        need()
          .channel(channel)
          .history(opts)
          .then((page) => ({ messages: page.messages.map((m) => messageEvent(m as unknown as Json)) })),
      );
    }
    case "clear":
      // BCAST-5: a local list; this library keeps none, so nothing is sent.
      return emit({ event: "result", ref, outcome: "ok" });
    case "close":
      client?.close();
      return emit({ event: "result", ref, outcome: "ok" });
    case "token": {
      const done = waitingTokens.get(String(cmd.request));
      waitingTokens.delete(String(cmd.request));
      done?.(typeof cmd.token === "string" ? cmd.token : null);
      return;
    }
    default:
      if (ref) emit({ event: "result", ref, outcome: "unsupported" });
  }
}

emit({ event: "ready", driver: 1, client: `@chorus-rt/client/${VERSION}` });
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let cmd: Json;
  try {
    cmd = JSON.parse(line) as Json;
  } catch {
    emit({ event: "log", message: `not JSON: ${line.slice(0, 200)}` });
    return;
  }
  try {
    run(cmd);
  } catch (err) {
    if (cmd.ref !== undefined) emit({ event: "result", ref: String(cmd.ref), outcome: "error", code: "client", message: String(err) });
  }
});
lines.on("close", () => {
  client?.close();
  setTimeout(() => process.exit(0), 50);
});
