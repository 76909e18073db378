export {
  ChorusClient,
  Channel,
  Presence,
  Cursors,
  SharedState,
  ResourceFeed,
} from "./client.js";
export type {
  ClientOptions,
  ClientEvents,
  ChannelEvents,
  Clock,
  ConnectionStatus,
  SubscribeOptions,
  HandleOptions,
  TokenProvider,
  TokenReason,
  WebSocketConstructor,
  WebSocketLike,
  WriteOptions,
} from "./client.js";
export { ChorusError, ConflictError, UnknownOutcomeError, ClosedError } from "./errors.js";
export { reactionTo, backoffDelay, backoffWindow } from "./policy.js";
export type { Reaction } from "./policy.js";
export { Emitter } from "./emitter.js";
export type * from "./types.js";
