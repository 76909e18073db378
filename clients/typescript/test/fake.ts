// A scripted WebSocket and a manual clock: the unit tests play the server frame by frame.
import type { Clock, WebSocketLike } from "../src/index.js";

export class FakeClock implements Clock {
  t = 1_000_000;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!due || e[1].at < due[1].at)) due = e;
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
    }
    this.t = end;
  }
  /** The delays of the pending timers. */
  pending(): number[] {
    return [...this.timers.values()].map((e) => e.at - this.t);
  }
}

export class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: Array<Record<string, unknown>> = [];
  closedWith: number | null = null;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(
    readonly url: string,
    readonly protocols: string | string[],
    readonly options?: { headers: Record<string, string> },
  ) {
    FakeSocket.all.push(this);
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(code?: number): void {
    this.closedWith = code ?? 1005;
  }
  /** The server sends a frame. */
  push(frame: unknown): void {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
  /** The server (or the network) ends the connection. */
  drop(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** The last frame sent of `type`. */
  last(type: string): Record<string, unknown> | undefined {
    return [...this.sent].reverse().find((f) => f.type === type);
  }
  ofType(type: string): Array<Record<string, unknown>> {
    return this.sent.filter((f) => f.type === type);
  }
}

export function welcome(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "welcome",
    protocol: "chorus.v1",
    connection_id: "c-1",
    user: { id: "alice", profile: {} },
    tenant: "",
    heartbeat: { interval_ms: 30000, timeout_ms: 60000 },
    limits: {
      max_frame_bytes: 65536,
      max_subscriptions: 100,
      max_channel_name_len: 200,
      broadcast_rate_per_sec: 100,
      broadcast_burst: 200,
      max_presence_members: 1000,
      max_room_users: 100,
      history_limit: 100,
      max_json_depth: 32,
      cursor_interval_ms: 50,
      presence_grace_ms: 5000,
    },
    capabilities: ["presence", "rooms", "cursors", "state", "history", "recovery", "data_change"],
    server: "fake/0",
    ...over,
  };
}

export function member(user_id: string, status = "online"): Record<string, unknown> {
  return { user_id, profile: { name: user_id }, status, data: {}, joined_at: 1, last_seen: 1 };
}

/** Lets pending promise callbacks run. */
export function flush(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
