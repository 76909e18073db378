// The Chorus client: one WebSocket connection, kept alive and resumed as spec/client.md
// asks, with typed handles for channels, presence, cursors, shared state and change feeds.
import { Emitter } from "./emitter.js";
import { ChorusError, ClosedError, ConflictError, UnknownOutcomeError, errorFrom } from "./errors.js";
import { STABLE_AFTER_MS, backoffDelay, reactionTo } from "./policy.js";
import type {
  BroadcastAck,
  ChannelMessage,
  ClientFrame,
  ClientMessage,
  CursorState,
  DataChange,
  ErrorFrame,
  HistoryPage,
  JsonObject,
  Member,
  PresenceStatus,
  RequestId,
  RoomOptions,
  ServerMessage,
  StateAck,
  StreamPosition,
  Subscribed,
  Welcome,
} from "./types.js";

/** The part of the WHATWG `WebSocket` interface the client uses (browsers, Node 22+, `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/**
 * A `WebSocket` constructor: the global one, or e.g. `import { WebSocket } from "ws"` on
 * Node 20. The third argument is passed only with `tokenIn: "header"` (the `ws` package's
 * options: `{ headers }`).
 */
export type WebSocketConstructor = new (
  url: string,
  protocols: string | string[],
  options?: { headers: Record<string, string> },
) => WebSocketLike;

/** Why the client asks for a token. */
export type TokenReason = "connect" | "expired" | "refresh";

/**
 * Gives the client a token: a fixed string, or a function called before each connection
 * (`connect`), after a 4100-4199 close (`expired`, CLIENT-6) and before the token's expiry
 * (`refresh`, CLIENT-16). `null` means "no token" (development-mode servers accept that on
 * connect; after `expired` it stops the client).
 */
export type TokenProvider = (reason: TokenReason) => string | null | Promise<string | null>;

/** Time and timers, injectable for tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ClientOptions {
  /** `ws://host:port/ws` or `wss://...`. */
  url: string;
  /** A token or a token provider; omit for a development-mode server. */
  token?: string | null | TokenProvider;
  /** The WebSocket implementation; defaults to `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /**
   * Where the token goes: `"query"` (`?token=`, the only way a browser can) or `"header"`
   * (`Authorization: Bearer`, kept out of URLs and logs, SEC-4; needs a WebSocket
   * implementation that takes headers, such as `ws`). Default `"query"`.
   */
  tokenIn?: "query" | "header";
  /** Connect in the constructor (default `true`). */
  autoConnect?: boolean;
  clock?: Clock;
  /** Uniform in [0, 1); the backoff's jitter. */
  random?: () => number;
}

/** Where the client is in the reconnect state machine of spec/client.md. */
export type ConnectionStatus = "idle" | "connecting" | "open" | "waiting" | "stopped" | "closed";

export interface ClientEvents {
  [name: string]: unknown;
  status: ConnectionStatus;
  welcome: Welcome;
  /** Every server frame, unknown types included (they are otherwise ignored, TRANS-27). */
  frame: ServerMessage | JsonObject;
  /** An `error` frame that answers no pending request. */
  error: ChorusError;
  /** A connection ended: its close code and how the client reacts. */
  disconnect: { code: number; reason: string; reaction: string; delayMs: number; attempt: number | null };
  /** The client will not reconnect on its own (terminal close code, no new token). */
  stopped: { code: number; reason: string };
}

const PROTOCOL = "chorus.v1";
const defaultClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

interface Pending {
  frame: ClientMessage;
  resolve: (frame: ServerMessage) => void;
  reject: (err: Error) => void;
}

/** What the client knows about one channel across connections. */
class ChannelRecord {
  /** The application wants this channel subscribed (survives reconnects, CLIENT-10). */
  wanted = false;
  /** Subscribed on the current connection. */
  live = false;
  /** A subscribe is in flight on the current connection. */
  subscribing = false;
  options: { password?: string; room?: RoomOptions } = {};
  /** The own presence the application asked for; reapplied when a subscribe lost it. */
  presenceWanted: { status?: Exclude<PresenceStatus, "offline">; data?: JsonObject } | null = null;
  /** Some handle uses the shared state: subscribe with `state: true`. */
  wantState = false;
  /** The epoch of the last `subscribed` or `history:page` (CLIENT-11). */
  epoch: string | null = null;
  /** The highest `seq` of a `message` or `data_change` delivered (duplicates are dropped). */
  delivered = 0;
  /** The highest `seq` of our own `broadcast:ack`s (CLIENT-11: acks occupy a seq too). */
  acked = 0;
  members = new Map<string, Member>();
  cursors = new Map<string, CursorState>();
  /** Confirmed shared state; `version === null`: no snapshot yet (or discarded, CLIENT-13). */
  state: { data: JsonObject; version: number | null; epoch: string | null } = {
    data: {},
    version: null,
    epoch: null,
  };
  syncing = false;
  cursorSentAt = -Infinity;
  cursorPending: { x: number; y: number; data?: JsonObject } | null = null;
  cursorTimer: unknown = null;
  readonly events = new Emitter<ChannelEvents>();
  constructor(readonly name: string) {}

  since(): StreamPosition | null {
    if (this.epoch === null) return null;
    return { epoch: this.epoch, seq: Math.max(this.delivered, this.acked) };
  }
}

/** Events of one channel, shared by all its handles. */
export interface ChannelEvents {
  [name: string]: unknown;
  subscribed: Subscribed;
  /** The server ended the subscription on its own (`reason`, e.g. `"forbidden"`). */
  unsubscribed: { reason: string | null };
  /** The server refused a subscribe (the channel is no longer wanted). */
  refused: ChorusError;
  message: ChannelMessage;
  data_change: DataChange;
  /**
   * What the client derived from the channel is stale (CLIENT-12): the resubscribe could not
   * recover the gap (`recovered: false`) or the channel has a new epoch. Reload it.
   */
  reset: { epoch: string; previousEpoch: string | null; recovered: boolean | null };
  presence: ReadonlyMap<string, Member>;
  joined: Member;
  left: { user_id: string; last_seen: number };
  updated: Member;
  cursors: ReadonlyMap<string, CursorState>;
  state: { data: JsonObject; version: number; epoch: string };
  conflict: ConflictError;
}

export class ChorusClient {
  readonly events = new Emitter<ClientEvents>();
  private readonly opts: ClientOptions;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly WS: WebSocketConstructor;
  private ws: WebSocketLike | null = null;
  private welcomeFrame: Welcome | null = null;
  private statusValue: ConnectionStatus = "idle";
  private attempt = 0;
  private nextId = 1;
  private pending = new Map<RequestId, Pending>();
  /** Requests made while no connection had its `welcome` yet (CLIENT-1). */
  private outbox: Pending[] = [];
  private channels = new Map<string, ChannelRecord>();
  private lastSent = 0;
  private lastReceived = 0;
  private heartbeatTimer: unknown = null;
  private reconnectTimer: unknown = null;
  private stableTimer: unknown = null;
  private refreshTimer: unknown = null;
  private expiresAt: number | null = null;
  private lastToken: string | null = null;
  private closedByClient = false;
  private broadcastBlockedUntil = 0;
  private blockedBroadcasts: Array<() => void> = [];
  private blockedTimer: unknown = null;

  constructor(opts: ClientOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? defaultClock;
    this.random = opts.random ?? Math.random;
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new TypeError(
        "no WebSocket implementation: pass `WebSocket` (e.g. from the `ws` package on Node 20)",
      );
    }
    this.WS = WS;
    if (opts.autoConnect !== false) this.connect();
  }

  /** The connection state. */
  get status(): ConnectionStatus {
    return this.statusValue;
  }

  /** The current connection's `welcome` (identity, limits, capabilities), once it arrived. */
  get welcome(): Welcome | null {
    return this.welcomeFrame;
  }

  /** The user id of this connection (`welcome.user.id`). */
  get userId(): string | null {
    return this.welcomeFrame?.user.id ?? null;
  }

  /** Starts connecting (no-op when already connecting or open). */
  connect(): void {
    if (this.statusValue === "connecting" || this.statusValue === "open") return;
    this.closedByClient = false;
    this.clearTimer("reconnectTimer");
    void this.open("connect");
  }

  /**
   * Ends the session on purpose with status 1000 (CLIENT-9: presence ends at once). Pending
   * requests are rejected; the client can `connect()` again later.
   */
  close(): void {
    this.closedByClient = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    this.welcomeFrame = null;
    this.failPending(() => new ClosedError("client closed"), true);
    for (const rec of this.channels.values()) this.connectionLost(rec);
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, "bye");
      } catch {
        // already closing
      }
    }
    this.setStatus("closed");
  }

  // ---- handles ----------------------------------------------------------------------

  /** A channel: messages, publish, history. Subscribe with `channel.subscribe()`. */
  channel(name: string): Channel {
    return new Channel(this, this.record(name));
  }

  /** The presence of a presence channel (subscribes to it). */
  presence(channel: string, opts?: HandleOptions): Presence {
    const rec = this.record(channel);
    if (opts?.subscribe !== false) this.want(rec, opts);
    return new Presence(this, rec);
  }

  /** The live cursors of a presence channel (subscribes to it). */
  cursors(channel: string, opts?: HandleOptions): Cursors {
    const rec = this.record(channel);
    if (opts?.subscribe !== false) this.want(rec, opts);
    return new Cursors(this, rec);
  }

  /** The shared state of a channel (subscribes with `state: true`, or syncs if already subscribed). */
  state(channel: string, opts?: HandleOptions): SharedState {
    const rec = this.record(channel);
    if (opts?.subscribe === false) return new SharedState(this, rec);
    if (!rec.wantState) {
      rec.wantState = true;
      if (rec.live) this.syncState(rec);
    }
    this.want(rec, opts);
    return new SharedState(this, rec);
  }

  /**
   * The change feed of a resource (`resource:{name}`), or of one record
   * (`resource:{name}:{recordId}`, CHG-21), subscribed at once.
   */
  resource(name: string, recordId?: string): ResourceFeed {
    const rec = this.record(recordId === undefined ? `resource:${name}` : `resource:${name}:${recordId}`);
    this.want(rec, undefined);
    return new ResourceFeed(this, rec);
  }

  // ---- internals used by the handles ------------------------------------------------

  /** @internal */
  record(name: string): ChannelRecord {
    let rec = this.channels.get(name);
    if (!rec) {
      rec = new ChannelRecord(name);
      this.channels.set(name, rec);
    }
    return rec;
  }

  /** @internal Marks the channel wanted and subscribes when connected. */
  want(rec: ChannelRecord, opts: SubscribeOptions | undefined): void {
    if (opts) {
      if (opts.password !== undefined) rec.options.password = opts.password;
      if (opts.room !== undefined) rec.options.room = opts.room;
      if (opts.presence !== undefined) rec.presenceWanted = { ...opts.presence };
      if (opts.since !== undefined && rec.epoch === null) {
        rec.epoch = opts.since.epoch;
        rec.delivered = opts.since.seq;
      }
    }
    if (rec.wanted) return;
    rec.wanted = true;
    if (this.welcomeFrame && !rec.live && !rec.subscribing) this.subscribe(rec);
  }

  /** @internal */
  unwant(rec: ChannelRecord): Promise<void> {
    rec.wanted = false;
    rec.wantState = false;
    if (!rec.live && !rec.subscribing) return Promise.resolve();
    return this.request({ type: "unsubscribe", channel: rec.name }).then(
      () => undefined,
      () => undefined,
    );
  }

  /** @internal Sends a request expecting a reply; queued until `welcome`. */
  request<T extends ServerMessage>(frame: ClientMessage): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.statusValue === "closed" || this.statusValue === "stopped") {
        reject(new ClosedError(`client is ${this.statusValue}`));
        return;
      }
      const p: Pending = { frame, resolve: resolve as (f: ServerMessage) => void, reject };
      if (this.welcomeFrame) this.dispatch(p);
      else this.outbox.push(p);
    });
  }

  /** @internal A broadcast, held back while a `rate_limited` retry delay runs (CLIENT-17). */
  broadcast(frame: ClientFrame<"broadcast">): Promise<BroadcastAck> {
    if (this.clock.now() >= this.broadcastBlockedUntil) return this.request(frame);
    return new Promise((resolve, reject) => {
      this.blockedBroadcasts.push(() => {
        this.request<BroadcastAck>(frame).then(resolve, reject);
      });
    });
  }

  /** @internal Sends a frame without a reply (cursor:update). Dropped when not connected. */
  fire(frame: ClientMessage): boolean {
    if (!this.welcomeFrame || this.overLimit(frame) || this.unannounced(frame)) return false;
    this.send(frame);
    return true;
  }

  /** @internal The announced cursor interval (CURS-18). */
  cursorInterval(): number {
    return this.welcomeFrame?.limits.cursor_interval_ms ?? 50;
  }

  /** @internal */
  now(): number {
    return this.clock.now();
  }

  /** @internal */
  timer(fn: () => void, ms: number): unknown {
    return this.clock.setTimeout(fn, ms);
  }

  /** @internal Takes a fresh snapshot of the channel's state (STATE-28, STATE-29). */
  syncState(rec: ChannelRecord): void {
    if (rec.syncing || !rec.live) return;
    rec.syncing = true;
    rec.state.version = null;
    this.request<ServerMessage>({ type: "state:sync:request", channel: rec.name }).then(
      () => {
        rec.syncing = false;
      },
      () => {
        rec.syncing = false;
      },
    );
  }

  // ---- connection -------------------------------------------------------------------

  private async open(reason: TokenReason): Promise<void> {
    this.setStatus("connecting");
    let token: string | null;
    try {
      token = await this.token(reason);
    } catch {
      token = null;
      if (reason === "expired") return this.stop(4100, "the token provider failed");
    }
    if (this.closedByClient) return;
    if (reason === "expired" && (token === null || token === this.lastToken)) {
      // CLIENT-6: never reconnect with the token that expired.
      return this.stop(4100, "token expired and no new token");
    }
    this.lastToken = token;
    let url = this.opts.url;
    const inHeader = this.opts.tokenIn === "header";
    if (token !== null && !inHeader) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    let ws: WebSocketLike;
    try {
      ws =
        token !== null && inHeader
          ? new this.WS(url, PROTOCOL, { headers: { Authorization: `Bearer ${token}` } })
          : new this.WS(url, PROTOCOL);
    } catch {
      this.ended(1006, "connect failed");
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.receive(ev.data);
    };
    let refused: number | null = null;
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      // CLIENT-5: an upgrade refused with 400 or 403 is terminal; other statuses back off.
      if (refused === 400 || refused === 403) this.ended(refused, "upgrade refused", false, true);
      else this.ended(ev.code, ev.reason);
    };
    ws.onerror = (ev) => {
      // Browsers do not expose a refused upgrade's status; the `ws` package says it in the
      // error's message. The close event follows and carries the code.
      const m = /Unexpected server response: (\d{3})/.exec(String((ev as { message?: unknown })?.message ?? ""));
      if (m) refused = Number(m[1]);
    };
  }

  private async token(reason: TokenReason): Promise<string | null> {
    const t = this.opts.token;
    if (typeof t === "function") return await t(reason);
    return t ?? null;
  }

  private send(frame: ClientMessage): void {
    if (!this.ws) return;
    this.lastSent = this.clock.now();
    try {
      this.ws.send(JSON.stringify(frame));
    } catch {
      // The close event will follow.
    }
  }

  private dispatch(p: Pending): void {
    const id = `c${this.nextId++}`;
    p.frame = { ...p.frame, id } as ClientMessage;
    // CLIENT-19: a broadcast gets a message_id of its own when the server deduplicates, so
    // that a repeat after an unknown outcome publishes once; a server announcing no
    // dedup_window_ms may predate the member and is sent none.
    if (p.frame.type === "broadcast" && p.frame.message_id === undefined && (this.welcomeFrame?.limits.dedup_window_ms ?? 0) > 0) {
      p.frame.message_id = newMessageId();
    }
    const refused = this.overLimit(p.frame) ?? this.unannounced(p.frame);
    if (refused) {
      p.reject(refused);
      return;
    }
    this.pending.set(id, p);
    this.send(p.frame);
  }

  /**
   * VER-10: a request (or a member of one) of a capability the server did not announce is
   * refused here with `unsupported`, the answer such a server gives.
   */
  private unannounced(frame: ClientMessage): ChorusError | null {
    const caps = this.welcomeFrame?.capabilities;
    if (!caps) return null;
    const needs = capabilityOf(frame);
    if (needs === null || caps.includes(needs)) return null;
    return new ChorusError({
      type: "error",
      code: "unsupported",
      message: `refused locally: the server does not announce \`${needs}\` (VER-10)`,
    });
  }

  /**
   * LIMIT-4: a frame larger than `max_frame_bytes` or nested deeper than `max_json_depth`
   * is refused here, with the error the server would send, instead of being sent.
   */
  private overLimit(frame: ClientMessage): ChorusError | null {
    const limits = this.welcomeFrame?.limits;
    if (!limits) return null;
    const text = JSON.stringify(frame);
    const bytes = text.length <= limits.max_frame_bytes / 3 ? text.length : new TextEncoder().encode(text).length;
    const local = (code: "limit_exceeded" | "invalid_json", limit: string): ChorusError =>
      new ChorusError({ type: "error", code, message: `refused locally: ${limit} exceeded (LIMIT-4)`, limit });
    if (bytes > limits.max_frame_bytes) return local("limit_exceeded", "max_frame_bytes");
    if (depth(frame) > limits.max_json_depth) return local("invalid_json", "max_json_depth");
    return null;
  }

  private receive(data: unknown): void {
    this.lastReceived = this.clock.now();
    if (typeof data !== "string") return; // binary frames are not Chorus frames
    let frame: unknown;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null || Array.isArray(frame)) return;
    const f = frame as JsonObject;
    if (typeof f.type !== "string") return;
    this.events.emit("frame", f);
    this.handle(f as unknown as ServerMessage);
  }

  private handle(f: ServerMessage): void {
    if (f.type === "welcome") return this.onWelcome(f);
    if (!this.welcomeFrame) return; // nothing is valid before welcome (CONN-6)
    const id = "id" in f ? f.id : undefined;
    const p = id !== undefined && id !== null ? this.pending.get(id) : undefined;
    if (p) this.pending.delete(id as RequestId);
    switch (f.type) {
      case "subscribed":
        this.onSubscribed(f);
        break;
      case "unsubscribed": {
        const rec = this.channels.get(f.channel);
        if (rec) {
          rec.live = false;
          rec.subscribing = false;
          if (!p) {
            // Removed by the server (CONN-17): do not resubscribe (CLIENT-10).
            rec.wanted = false;
            rec.events.emit("unsubscribed", { reason: f.reason ?? null });
          }
        }
        break;
      }
      case "message":
      case "data_change":
        this.onStreamItem(f);
        break;
      case "broadcast:ack": {
        const rec = this.channels.get(f.channel);
        if (rec && rec.epoch !== null) rec.acked = Math.max(rec.acked, f.seq);
        break;
      }
      case "history:page": {
        const rec = this.channels.get(f.channel);
        if (rec && rec.epoch !== f.position.epoch && rec.live) {
          // A new epoch seen through history: what we hold is stale (CLIENT-12).
          const previous = rec.epoch;
          rec.epoch = f.position.epoch;
          rec.delivered = f.position.seq;
          rec.acked = 0;
          rec.events.emit("reset", { epoch: f.position.epoch, previousEpoch: previous, recovered: null });
        }
        break;
      }
      case "presence:list": {
        const rec = this.channels.get(f.channel);
        if (rec) this.setMembers(rec, f.members);
        break;
      }
      case "user:joined":
      case "presence:updated": {
        const rec = this.channels.get(f.channel);
        if (rec) {
          rec.members.set(f.member.user_id, f.member);
          rec.events.emit(f.type === "user:joined" ? "joined" : "updated", f.member);
          rec.events.emit("presence", rec.members);
        }
        break;
      }
      case "user:left": {
        const rec = this.channels.get(f.channel);
        if (rec) {
          rec.members.delete(f.user_id);
          rec.events.emit("left", { user_id: f.user_id, last_seen: f.last_seen });
          rec.events.emit("presence", rec.members);
          // CURS-19: user:left removes the cursor.
          if (rec.cursors.delete(f.user_id)) rec.events.emit("cursors", rec.cursors);
        }
        break;
      }
      case "cursor:moved": {
        const rec = this.channels.get(f.channel);
        if (rec) {
          for (const c of f.cursors) rec.cursors.set(c.user_id, c); // CURS-20
          rec.events.emit("cursors", rec.cursors);
        }
        break;
      }
      case "state:sync": {
        const rec = this.channels.get(f.channel);
        if (rec) this.snapshot(rec, f.data, f.version, f.epoch);
        break;
      }
      case "state:update":
      case "state:merge":
      case "state:delete":
        this.onStateFrame(f);
        break;
      case "state:ack": {
        const rec = this.channels.get(f.channel);
        if (rec && rec.state.epoch !== null && f.epoch !== rec.state.epoch) this.syncState(rec); // STATE-28
        break;
      }
      case "error":
        this.onError(f, p);
        return;
      default:
        break; // pong, auth:refreshed, presence:ack, and types this client does not know
    }
    if (f.type === "auth:refreshed") {
      this.expiresAt = f.expires_at ?? null;
      this.scheduleRefresh();
    }
    p?.resolve(f);
  }

  private onWelcome(w: Welcome): void {
    if (this.welcomeFrame) return; // once per connection (CONN-6)
    this.welcomeFrame = w;
    this.lastSent = this.clock.now(); // the heartbeat interval counts from here
    this.setStatus("open");
    this.expiresAt = w.expires_at ?? null;
    this.clearTimer("stableTimer");
    // CLIENT-4: only a connection that stays open 30 s resets the backoff.
    this.stableTimer = this.clock.setTimeout(() => {
      this.attempt = 0;
    }, STABLE_AFTER_MS);
    this.events.emit("welcome", w);
    // CLIENT-10: resubscribe everything first, pipelined (TRANS-25); then the queued requests.
    for (const rec of this.channels.values()) if (rec.wanted) this.subscribe(rec);
    const queued = this.outbox;
    this.outbox = [];
    for (const p of queued) this.dispatch(p);
    this.armHeartbeat();
    this.scheduleRefresh();
  }

  private subscribe(rec: ChannelRecord): void {
    const frame: ClientFrame<"subscribe"> = { type: "subscribe", channel: rec.name };
    const since = rec.since();
    // CLIENT-11: resume from the last position when the server announces recovery.
    if (since && this.welcomeFrame?.capabilities.includes("recovery")) frame.since = since;
    // CLIENT-13: always a fresh snapshot of the state on a (re)subscribe.
    if (rec.wantState) frame.state = true;
    if (rec.options.password !== undefined) frame.password = rec.options.password;
    if (rec.options.room !== undefined) frame.room = rec.options.room;
    rec.subscribing = true;
    this.request<Subscribed>(frame).then(
      () => undefined,
      (err: unknown) => {
        rec.subscribing = false;
        if (err instanceof ChorusError) {
          if (err.code === "already_subscribed") {
            rec.live = true;
            return;
          }
          rec.wanted = false;
          rec.events.emit("refused", err);
        }
      },
    );
  }

  private onSubscribed(f: Subscribed): void {
    const rec = this.channels.get(f.channel);
    if (!rec) return;
    rec.live = true;
    rec.subscribing = false;
    const previous = rec.epoch;
    const resumed = f.recovered === true && f.position.epoch === previous;
    if (!resumed) {
      // Fresh start, or a gap that cannot be filled: continue from the new position.
      rec.epoch = f.position.epoch;
      rec.delivered = f.position.seq;
      rec.acked = 0;
      if (previous !== null) {
        rec.events.emit("reset", {
          epoch: f.position.epoch,
          previousEpoch: previous,
          recovered: f.recovered ?? null,
        });
      }
    }
    if (f.presence) {
      this.setMembers(rec, f.presence);
      this.reapplyPresence(rec);
    }
    if (f.cursors) {
      rec.cursors = new Map(f.cursors.map((c) => [c.user_id, c]));
      rec.events.emit("cursors", rec.cursors);
    }
    if (f.state) this.snapshot(rec, f.state.data, f.state.version, f.state.epoch);
    rec.events.emit("subscribed", f);
  }

  /** Sends the presence the application asked for when the snapshot does not show it. */
  private reapplyPresence(rec: ChannelRecord): void {
    const want = rec.presenceWanted;
    const me = this.userId === null ? undefined : rec.members.get(this.userId);
    if (!want || !me) return;
    const statusOff = want.status !== undefined && me.status !== want.status;
    const dataOff = want.data !== undefined && JSON.stringify(me.data) !== JSON.stringify(want.data);
    if (!statusOff && !dataOff) return;
    const frame: ClientFrame<"presence:update"> = { type: "presence:update", channel: rec.name };
    if (want.status !== undefined) frame.status = want.status;
    if (want.data !== undefined) frame.data = want.data;
    this.request(frame).catch(() => undefined);
  }

  private setMembers(rec: ChannelRecord, members: Member[]): void {
    rec.members = new Map(members.map((m) => [m.user_id, m]));
    rec.events.emit("presence", rec.members);
  }

  private onStreamItem(f: ChannelMessage | DataChange): void {
    const rec = this.channels.get(f.channel);
    if (!rec || rec.epoch === null) return;
    if (f.seq <= rec.delivered) return; // a duplicate (a replay overlapping what we saw)
    rec.delivered = f.seq;
    if (f.type === "message") rec.events.emit("message", f);
    else rec.events.emit("data_change", f);
  }

  private snapshot(rec: ChannelRecord, data: JsonObject, version: number, epoch: string): void {
    rec.syncing = false;
    rec.state = { data: { ...data }, version, epoch };
    rec.events.emit("state", { data: rec.state.data, version, epoch });
  }

  private onStateFrame(f: ServerMessage & { type: "state:update" | "state:merge" | "state:delete" }): void {
    const rec = this.channels.get(f.channel);
    if (!rec || !rec.wantState) return;
    const s = rec.state;
    if (s.version === null) return; // waiting for a snapshot that reflects this frame
    if (f.epoch !== s.epoch) return this.syncState(rec); // STATE-28
    if (f.version <= s.version) return; // already applied (STATE-29)
    if (f.version > s.version + 1) return this.syncState(rec); // a gap (STATE-29)
    const data = { ...s.data };
    if (f.type === "state:update") data[f.key] = f.value;
    else if (f.type === "state:merge") Object.assign(data, f.data);
    else delete data[f.key];
    rec.state = { data, version: f.version, epoch: f.epoch };
    rec.events.emit("state", { data, version: f.version, epoch: f.epoch });
  }

  private onError(f: ErrorFrame, p: Pending | undefined): void {
    const err = errorFrom(f);
    if (f.code === "rate_limited" && typeof f.retry_after_ms === "number") {
      this.blockBroadcasts(f.retry_after_ms);
    }
    if (err instanceof ConflictError && f.channel) {
      const rec = this.channels.get(f.channel);
      if (rec) {
        // STATE-28: a conflict from another epoch means our copy is stale.
        if (err.current && rec.state.epoch !== null && err.current.epoch !== rec.state.epoch) {
          this.syncState(rec);
        }
        rec.events.emit("conflict", err);
      }
    }
    if (p) {
      if (p.frame.type === "subscribe") {
        const rec = this.channels.get(p.frame.channel);
        if (rec) rec.subscribing = false;
      }
      p.reject(err);
    } else this.events.emit("error", err);
  }

  private blockBroadcasts(ms: number): void {
    this.broadcastBlockedUntil = Math.max(this.broadcastBlockedUntil, this.clock.now() + ms);
    if (this.blockedTimer !== null) this.clock.clearTimeout(this.blockedTimer);
    this.blockedTimer = this.clock.setTimeout(() => {
      this.blockedTimer = null;
      const held = this.blockedBroadcasts;
      this.blockedBroadcasts = [];
      for (const go of held) go();
    }, ms);
  }

  /** The connection ended (close event, or our dead-connection timeout). */
  private ended(code: number, reason: string, immediate = false, terminal = false): void {
    const ws = this.ws;
    this.ws = null;
    if (ws) detach(ws);
    this.welcomeFrame = null;
    this.clearTimers();
    // CLIENT-18: whatever awaited a reply has an unknown outcome. Unsent requests stay queued.
    this.failPending((p) => new UnknownOutcomeError(p.frame.type), false);
    for (const rec of this.channels.values()) this.connectionLost(rec);
    if (this.closedByClient) return;
    const reaction = terminal ? "stop" : immediate ? "immediate" : reactionTo(code, false);
    if (reaction === "none" || reaction === "stop") {
      this.events.emit("disconnect", { code, reason, reaction: "stop", delayMs: 0, attempt: null });
      return this.stop(code, reason);
    }
    if (reaction === "refresh") {
      this.events.emit("disconnect", { code, reason, reaction, delayMs: 0, attempt: null });
      void this.open("expired");
      return;
    }
    if (reaction === "immediate") {
      this.events.emit("disconnect", { code, reason, reaction, delayMs: 0, attempt: null });
      void this.open("connect");
      return;
    }
    const attempt = this.attempt;
    const delay = backoffDelay(attempt, this.random);
    this.attempt += 1;
    this.events.emit("disconnect", { code, reason, reaction, delayMs: delay, attempt });
    this.setStatus("waiting");
    this.reconnectTimer = this.clock.setTimeout(() => {
      this.reconnectTimer = null;
      void this.open("connect");
    }, delay);
  }

  private connectionLost(rec: ChannelRecord): void {
    rec.live = false;
    rec.subscribing = false;
    rec.syncing = false;
    // CLIENT-13: the state version we held is void until the next snapshot.
    rec.state = { ...rec.state, version: null };
    if (rec.cursorTimer !== null) {
      this.clock.clearTimeout(rec.cursorTimer);
      rec.cursorTimer = null;
    }
    rec.cursorPending = null;
  }

  private stop(code: number, reason: string): void {
    this.clearTimers();
    this.failPending(() => new ClosedError(`stopped after close ${code}`), true);
    this.setStatus("stopped");
    this.events.emit("stopped", { code, reason });
  }

  private failPending(make: (p: Pending) => Error, outboxToo: boolean): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(make(p));
    if (outboxToo) {
      const queued = this.outbox;
      this.outbox = [];
      for (const p of queued) p.reject(make(p));
    }
  }

  // ---- heartbeat and token refresh ---------------------------------------------------

  /** CLIENT-14 (ping after `interval_ms` without sending) and CLIENT-15 (dead after `timeout_ms` of silence). */
  private armHeartbeat(): void {
    const w = this.welcomeFrame;
    if (!w || this.heartbeatTimer !== null) return;
    const { interval_ms, timeout_ms } = w.heartbeat;
    const now = this.clock.now();
    this.lastReceived = now;
    const check = (): void => {
      this.heartbeatTimer = null;
      if (!this.welcomeFrame) return;
      const t = this.clock.now();
      if (t - this.lastReceived >= timeout_ms) {
        // Dead: close it ourselves, then reconnect at once (CLIENT-15, CLIENT-8).
        const ws = this.ws;
        if (ws) detach(ws);
        try {
          ws?.close(4000, "dead connection");
        } catch {
          // ignore
        }
        this.ended(4300, "dead connection", true);
        return;
      }
      if (t - this.lastSent >= interval_ms) this.send({ type: "ping" });
      const next = Math.min(this.lastSent + interval_ms, this.lastReceived + timeout_ms) - this.clock.now();
      this.heartbeatTimer = this.clock.setTimeout(check, Math.max(1, next));
    };
    const first = Math.min(this.lastSent + interval_ms, now + timeout_ms) - now;
    this.heartbeatTimer = this.clock.setTimeout(check, Math.max(1, first));
  }

  /** CLIENT-16: `auth:refresh` once 80% of the remaining lifetime has passed. */
  private scheduleRefresh(): void {
    this.clearTimer("refreshTimer");
    if (this.expiresAt === null || typeof this.opts.token !== "function") return;
    const left = this.expiresAt - this.clock.now();
    this.refreshTimer = this.clock.setTimeout(() => {
      this.refreshTimer = null;
      void this.refresh();
    }, Math.max(0, Math.floor(left * 0.8)));
  }

  private async refresh(): Promise<void> {
    let token: string | null = null;
    try {
      token = await this.token("refresh");
    } catch {
      return;
    }
    if (token === null || !this.welcomeFrame) return;
    this.lastToken = token;
    this.request({ type: "auth:refresh", token }).catch((err: unknown) => {
      if (err instanceof ChorusError) this.events.emit("error", err);
    });
  }

  private setStatus(s: ConnectionStatus): void {
    if (this.statusValue === s) return;
    this.statusValue = s;
    this.events.emit("status", s);
  }

  private clearTimer(name: "heartbeatTimer" | "reconnectTimer" | "stableTimer" | "refreshTimer"): void {
    const h = this[name];
    if (h !== null) this.clock.clearTimeout(h);
    this[name] = null;
  }

  private clearTimers(): void {
    this.clearTimer("heartbeatTimer");
    this.clearTimer("reconnectTimer");
    this.clearTimer("stableTimer");
    this.clearTimer("refreshTimer");
  }
}

/** Stops listening to a socket we are done with (an error handler stays: `ws` throws without one). */
function detach(ws: WebSocketLike): void {
  ws.onclose = ws.onmessage = ws.onopen = null;
  ws.onerror = () => undefined;
}

/** The capability a client frame belongs to (versioning.md), or null for the core ones. */
function capabilityOf(frame: ClientMessage): string | null {
  switch (frame.type) {
    case "history":
      return "history";
    case "presence":
    case "presence:update":
      return "presence";
    case "cursor:update":
      return "cursors";
    case "state:update":
    case "state:merge":
    case "state:delete":
    case "state:sync:request":
      return "state";
    case "subscribe":
      if (frame.state) return "state";
      if (frame.room) return "rooms";
      if (frame.since) return "recovery";
      return null;
    default:
      return null;
  }
}

/** Nesting depth of a JSON value (`{}` is 1, a scalar 0), as limits.md counts it. */
function depth(v: unknown): number {
  if (typeof v !== "object" || v === null) return 0;
  let deepest = 0;
  for (const x of Array.isArray(v) ? v : Object.values(v)) deepest = Math.max(deepest, depth(x));
  return deepest + 1;
}

/** Options of a subscribe (rooms: password and creation settings). */
export interface SubscribeOptions {
  password?: string;
  room?: RoomOptions;
  /** An explicit first position (a position the application stored), for the first subscribe. */
  since?: StreamPosition;
  /** Presence channels: the own status and data, (re)applied after each subscribe. */
  presence?: { status?: Exclude<PresenceStatus, "offline">; data?: JsonObject };
}

/**
 * Options of `presence()`, `cursors()` and `state()`: `subscribe: false` gives a handle on a
 * channel without subscribing to it (its requests then get `not_subscribed` from the server).
 */
export interface HandleOptions extends SubscribeOptions {
  subscribe?: boolean;
}

/** Waits for the channel's next `subscribed`, or resolves at once when subscribed. */
function whenSubscribed(rec: ChannelRecord): Promise<void> {
  if (rec.live) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const offs = [
      rec.events.once("subscribed", () => {
        offs.forEach((off) => off());
        resolve();
      }),
      rec.events.once("refused", (err) => {
        offs.forEach((off) => off());
        reject(err);
      }),
      rec.events.once("unsubscribed", ({ reason }) => {
        offs.forEach((off) => off());
        reject(new Error(`subscription to ${rec.name} ended: ${reason ?? "unsubscribed"}`));
      }),
    ];
  });
}

/** A channel: live messages, publishing, history. */
export class Channel {
  constructor(
    private readonly client: ChorusClient,
    private readonly rec: ChannelRecord,
  ) {}

  get name(): string {
    return this.rec.name;
  }

  /** The position a resubscribe resumes from (CLIENT-11), or null before the first `subscribed`. */
  get position(): StreamPosition | null {
    return this.rec.since();
  }

  /** Subscribes (kept across reconnects, resumed with `since`) and resolves once subscribed. */
  subscribe(opts?: SubscribeOptions): Promise<void> {
    this.client.want(this.rec, opts);
    return whenSubscribed(this.rec);
  }

  /** Unsubscribes and forgets the channel's wish to be subscribed. */
  unsubscribe(): Promise<void> {
    return this.client.unwant(this.rec);
  }

  /**
   * Publishes `data` as `event`; resolves with the `broadcast:ack` (its `seq`). `messageId`
   * (CLIENT-19): repeat a publish that failed with an unknown outcome with the same id within
   * the server's `dedup_window_ms` and it is published once (CHAN-44); without one, the client
   * picks a fresh id per call when the server deduplicates.
   */
  publish(event: string, data: JsonObject, opts?: { echo?: boolean; messageId?: string }): Promise<BroadcastAck> {
    const frame: ClientFrame<"broadcast"> = { type: "broadcast", channel: this.rec.name, event, data };
    if (opts?.echo !== undefined) frame.echo = opts.echo;
    if (opts?.messageId !== undefined) frame.message_id = opts.messageId;
    return this.client.broadcast(frame);
  }

  /** One page of history, newest items first up to `limit` (HIST-14). */
  history(opts?: { limit?: number; beforeSeq?: number; event?: string }): Promise<HistoryPage> {
    const frame: ClientFrame<"history"> = { type: "history", channel: this.rec.name };
    if (opts?.limit !== undefined) frame.limit = opts.limit;
    if (opts?.beforeSeq !== undefined) frame.before_seq = opts.beforeSeq;
    if (opts?.event !== undefined) frame.event = opts.event;
    return this.client.request<HistoryPage>(frame);
  }

  /** Every live (or recovered) message, each exactly once. */
  onMessage(fn: (m: ChannelMessage) => void): () => void {
    return this.rec.events.on("message", fn);
  }

  /** Every `data_change` of the channel (a resource feed or a record channel, both `resource:`), each exactly once. */
  onDataChange(fn: (c: DataChange) => void): () => void {
    return this.rec.events.on("data_change", fn);
  }

  /** Messages of one `event` name. */
  on(event: string, fn: (data: unknown, m: ChannelMessage) => void): () => void {
    return this.rec.events.on("message", (m) => {
      if (m.event === event) fn(m.data, m);
    });
  }

  /** The channel's stream could not be resumed: reload what you show (CLIENT-12). */
  onReset(fn: (r: ChannelEvents["reset"]) => void): () => void {
    return this.rec.events.on("reset", fn);
  }

  /** Each `subscribed` (first subscribe and every resubscribe). */
  onSubscribed(fn: (s: Subscribed) => void): () => void {
    return this.rec.events.on("subscribed", fn);
  }

  /** The server removed the subscription on its own (CONN-17). */
  onUnsubscribed(fn: (r: { reason: string | null }) => void): () => void {
    return this.rec.events.on("unsubscribed", fn);
  }

  /** The server refused the subscribe (`forbidden`, `bad_password`, `room_full`, ...). */
  onRefused(fn: (e: ChorusError) => void): () => void {
    return this.rec.events.on("refused", fn);
  }
}

/** Presence of a channel: one member per user, however many tabs they have open (PRES-1). */
export class Presence {
  constructor(
    private readonly client: ChorusClient,
    private readonly rec: ChannelRecord,
  ) {}

  /** Resolves once the first snapshot arrived. */
  ready(): Promise<void> {
    return whenSubscribed(this.rec);
  }

  /** Every member by user id, self included. */
  get members(): ReadonlyMap<string, Member> {
    return this.rec.members;
  }

  /** Own member (the same for every tab of this user). */
  get me(): Member | undefined {
    const id = this.client.userId;
    return id === null ? undefined : this.rec.members.get(id);
  }

  /** Members other than this user. */
  others(): Member[] {
    const id = this.client.userId;
    return [...this.rec.members.values()].filter((m) => m.user_id !== id);
  }

  /** Number of distinct users. */
  get count(): number {
    return this.rec.members.size;
  }

  /** Replaces own status and/or data (PRES-16; `data` replaces, it does not merge). */
  update(change: { status?: Exclude<PresenceStatus, "offline">; data?: JsonObject }): Promise<void> {
    this.rec.presenceWanted = { ...this.rec.presenceWanted, ...change };
    const frame: ClientFrame<"presence:update"> = { type: "presence:update", channel: this.rec.name };
    if (change.status !== undefined) frame.status = change.status;
    if (change.data !== undefined) frame.data = change.data;
    return this.client.request(frame).then(() => undefined);
  }

  /** Called with the whole member map after every change. */
  onChange(fn: (members: ReadonlyMap<string, Member>) => void): () => void {
    return this.rec.events.on("presence", fn);
  }

  onJoin(fn: (m: Member) => void): () => void {
    return this.rec.events.on("joined", fn);
  }

  onLeave(fn: (l: { user_id: string; last_seen: number }) => void): () => void {
    return this.rec.events.on("left", fn);
  }

  onUpdate(fn: (m: Member) => void): () => void {
    return this.rec.events.on("updated", fn);
  }

  /** Leaves the channel (presence ends at once, PRES-25). */
  leave(): Promise<void> {
    return this.client.unwant(this.rec);
  }
}

/** Live cursors of a presence channel, throttled to the announced `cursor_interval_ms` (CURS-18). */
export class Cursors {
  constructor(
    private readonly client: ChorusClient,
    private readonly rec: ChannelRecord,
  ) {}

  /** The latest cursor of every user that has one (other tabs of this user included, CURS-10). */
  get all(): ReadonlyMap<string, CursorState> {
    return this.rec.cursors;
  }

  /** Cursors of users other than this one. */
  others(): CursorState[] {
    const id = this.client.userId;
    return [...this.rec.cursors.values()].filter((c) => c.user_id !== id);
  }

  /**
   * Moves own cursor. At most one `cursor:update` per interval leaves; the latest position
   * within an interval is sent at its end.
   */
  move(x: number, y: number, data?: JsonObject): void {
    const rec = this.rec;
    rec.cursorPending = data === undefined ? { x, y } : { x, y, data };
    if (rec.cursorTimer !== null || !rec.live) return;
    const interval = this.client.cursorInterval();
    const wait = rec.cursorSentAt + interval - this.client.now();
    if (wait <= 0) this.flush();
    else rec.cursorTimer = this.client.timer(() => this.flush(), wait);
  }

  private flush(): void {
    const rec = this.rec;
    rec.cursorTimer = null;
    const p = rec.cursorPending;
    if (!p || !rec.live) return;
    rec.cursorPending = null;
    const frame: ClientFrame<"cursor:update"> = { type: "cursor:update", channel: rec.name, x: p.x, y: p.y };
    if (p.data !== undefined) frame.data = p.data;
    if (this.client.fire(frame)) rec.cursorSentAt = this.client.now();
  }

  onChange(fn: (cursors: ReadonlyMap<string, CursorState>) => void): () => void {
    return this.rec.events.on("cursors", fn);
  }
}

/** Options of a state write. */
export interface WriteOptions {
  /**
   * Compare-and-set: the write applies only if the state is still at this version
   * (STATE-19). `"current"` uses the version this client holds.
   */
  expectedVersion?: number | "current";
  /**
   * The epoch `expectedVersion` belongs to (STATE-32); defaults to the epoch of the state
   * this client holds.
   */
  expectedEpoch?: string;
}

/** A channel's shared state: snapshot + ordered updates, with compare-and-set. */
export class SharedState {
  constructor(
    private readonly client: ChorusClient,
    private readonly rec: ChannelRecord,
  ) {}

  /** The confirmed data (empty until the first snapshot). */
  get data(): Readonly<JsonObject> {
    return this.rec.state.data;
  }

  /** The version of `data`, or null while no snapshot is held. */
  get version(): number | null {
    return this.rec.state.version;
  }

  get epoch(): string | null {
    return this.rec.state.epoch;
  }

  /** Resolves once a snapshot is held. */
  ready(): Promise<void> {
    if (this.rec.state.version !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const off = this.rec.events.on("state", () => {
        off();
        resolve();
      });
    });
  }

  /** Sets `key` to `value`. Rejects with `ConflictError` when `expectedVersion` is stale. */
  set(key: string, value: unknown, opts?: WriteOptions): Promise<StateAck> {
    const frame: ClientFrame<"state:update"> = { type: "state:update", channel: this.rec.name, key, value };
    this.expect(frame, opts);
    return this.client.request<StateAck>(frame);
  }

  /** Replaces each top-level key of `data` (STATE-6: shallow). */
  merge(data: JsonObject, opts?: WriteOptions): Promise<StateAck> {
    const frame: ClientFrame<"state:merge"> = { type: "state:merge", channel: this.rec.name, data };
    this.expect(frame, opts);
    return this.client.request<StateAck>(frame);
  }

  /** Removes `key`. */
  delete(key: string, opts?: WriteOptions): Promise<StateAck> {
    const frame: ClientFrame<"state:delete"> = { type: "state:delete", channel: this.rec.name, key };
    this.expect(frame, opts);
    return this.client.request<StateAck>(frame);
  }

  /**
   * Read-modify-write of `key` with compare-and-set (STATE-31): computes the new value from
   * the value this client holds and writes it with `expected_version`; on `conflict` it waits
   * for the newer state, reports the conflict through `onConflict`, and tries again, at most
   * `retries` times (then the last `ConflictError` is thrown). Return `undefined` from `fn`
   * to give up without writing.
   */
  async update(
    key: string,
    fn: (current: unknown) => unknown,
    opts?: { retries?: number },
  ): Promise<StateAck | undefined> {
    const retries = opts?.retries ?? 5;
    for (let tryNo = 0; ; tryNo++) {
      await this.ready();
      const version = this.rec.state.version;
      if (version === null) continue;
      const next = fn(this.rec.state.data[key]);
      if (next === undefined) return undefined;
      try {
        return await this.set(key, next, { expectedVersion: version });
      } catch (err) {
        if (!(err instanceof ConflictError) || tryNo >= retries) throw err;
        await this.reach(err.current?.version ?? version + 1, err.current?.epoch ?? null);
      }
    }
  }

  /** Every change of the confirmed state. */
  onChange(fn: (s: { data: JsonObject; version: number; epoch: string }) => void): () => void {
    return this.rec.events.on("state", fn);
  }

  /** Every conflict a write of this client met (whether or not `update` retried it). */
  onConflict(fn: (e: ConflictError) => void): () => void {
    return this.rec.events.on("conflict", fn);
  }

  private expect(frame: { expected_version?: number | null; expected_epoch?: string | null }, opts?: WriteOptions): void {
    if (opts?.expectedVersion === undefined) return;
    if (opts.expectedVersion === "current") {
      const v = this.rec.state.version;
      if (v === null) throw new Error("no snapshot held yet: await state.ready()");
      frame.expected_version = v;
    } else frame.expected_version = opts.expectedVersion;
    // STATE-33: the epoch of the state the version was read from, taken now, so that a
    // snapshot of a new epoch arriving while the write waits cannot make it match.
    const epoch = opts.expectedEpoch ?? this.rec.state.epoch;
    if (epoch !== null && epoch !== undefined) frame.expected_epoch = epoch;
  }

  /** Waits until the held state reaches `version` (or another epoch). */
  private reach(version: number, epoch: string | null): Promise<void> {
    const s = this.rec.state;
    if (s.version !== null && (s.version >= version || (epoch !== null && s.epoch !== epoch))) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const off = this.rec.events.on("state", (st) => {
        if (st.version >= version || (epoch !== null && st.epoch !== epoch)) {
          off();
          resolve();
        }
      });
    });
  }
}

/** The change feed of a resource or a record (`data_change` frames, spec/changes.md). */
export class ResourceFeed {
  constructor(
    private readonly client: ChorusClient,
    private readonly rec: ChannelRecord,
  ) {}

  get channel(): string {
    return this.rec.name;
  }

  ready(): Promise<void> {
    return whenSubscribed(this.rec);
  }

  /** Every committed change, in commit order, each exactly once across reconnects. */
  onChange(fn: (change: DataChange) => void): () => void {
    return this.rec.events.on("data_change", fn);
  }

  /** The feed could not be resumed: reload the resource (CLIENT-12). */
  onReset(fn: (r: ChannelEvents["reset"]) => void): () => void {
    return this.rec.events.on("reset", fn);
  }

  close(): Promise<void> {
    return this.client.unwant(this.rec);
  }
}

/** A message id unique to one publish (CLIENT-19): 128 random bits, hex. */
function newMessageId(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
