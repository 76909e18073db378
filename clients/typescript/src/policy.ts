// The reconnect policy of spec/client.md, as pure functions.

/** What the client does after a connection ended. */
export type Reaction =
  /** Do not reconnect; report to the application (CLIENT-5). */
  | "stop"
  /** Get a new token, then reconnect (CLIENT-6). */
  | "refresh"
  /** Reconnect after a full-jitter delay (CLIENT-7). */
  | "backoff"
  /** Reconnect at once, then with backoff if that fails (CLIENT-8). */
  | "immediate";

/**
 * The reaction to a close `code` (spec/client.md, "Reconnecting"). `byClient`: the client
 * itself closed the connection (its 1000 ends the session; its dead-connection close is
 * CLIENT-15's immediate reconnect and does not go through here).
 */
export function reactionTo(code: number, byClient: boolean): Reaction | "none" {
  if (byClient && code === 1000) return "none";
  if (code === 1000) return "stop"; // a server 1000
  if (code >= 4000 && code <= 4099) return "stop";
  if (code === 1002 || code === 1003 || code === 1007 || code === 1009) return "stop";
  if (code >= 4100 && code <= 4199) return "refresh";
  if (code >= 4300 && code <= 4399) return "immediate";
  // 4200-4299, 4400-4999, 1001, 1011, 1006 (dropped without Close), anything unregistered.
  return "backoff";
}

/** The cap of the backoff window (CLIENT-3), and the time after which a connection is stable (CLIENT-4). */
export const BACKOFF_CAP_MS = 30000;
export const STABLE_AFTER_MS = 30000;

/** The upper bound of the delay before attempt `n`: min(30000, 1000 * 2^n) ms (CLIENT-3). */
export function backoffWindow(n: number): number {
  return Math.min(BACKOFF_CAP_MS, 1000 * 2 ** Math.min(n, 16));
}

/** Full jitter: a delay drawn uniformly from [0, backoffWindow(n)] (CLIENT-3). */
export function backoffDelay(n: number, random: () => number): number {
  return Math.floor(random() * backoffWindow(n));
}
