import type { ErrorFrame, StateVersion } from "./types.js";

/** A request the server refused with an `error` frame; `code` is the stable machine code. */
export class ChorusError extends Error {
  /** The error code (`forbidden`, `not_subscribed`, ...); unknown codes are kept as sent (ERR-7). */
  readonly code: string;
  /** The whole `error` frame. */
  readonly frame: ErrorFrame;
  constructor(frame: ErrorFrame) {
    super(`${frame.code}: ${frame.message}`);
    this.name = "ChorusError";
    this.code = frame.code;
    this.frame = frame;
  }
}

/**
 * A compare-and-set write lost the race (STATE-19): somebody else wrote first. `current` is
 * the state's version at the server; the write changed nothing.
 */
export class ConflictError extends ChorusError {
  readonly current: StateVersion | null;
  constructor(frame: ErrorFrame) {
    super(frame);
    this.name = "ConflictError";
    this.current = frame.current ?? null;
  }
}

/**
 * The connection ended while a request awaited its reply: the server may or may not have
 * applied it (CLIENT-18). Check (through the recovered stream or the state's version) before
 * repeating it.
 */
export class UnknownOutcomeError extends Error {
  constructor(what: string) {
    super(`connection lost before the reply to ${what}: outcome unknown`);
    this.name = "UnknownOutcomeError";
  }
}

/** The client was closed (by the application, or for good after a terminal close code). */
export class ClosedError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "ClosedError";
  }
}

export function errorFrom(frame: ErrorFrame): ChorusError {
  return frame.code === "conflict" ? new ConflictError(frame) : new ChorusError(frame);
}
