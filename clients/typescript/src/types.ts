// Friendly names for the generated wire types (src/generated/, from schema/*.schema.json).
import type { ClientMessage } from "./generated/client.js";
import type { ServerMessage } from "./generated/server.js";

export type { ClientMessage } from "./generated/client.js";
export type {
  ServerMessage,
  Capability,
  CursorState,
  Heartbeat,
  Limits,
  Member,
  RoomInfo,
  StateSnapshot,
  StateVersion,
  StreamPosition,
  UserInfo,
} from "./generated/server.js";
export type { RoomOptions } from "./generated/client.js";
/** A member's status; `offline` is never sent (PRES-4), a client shows it after `user:left`. */
export type PresenceStatus = import("./generated/server.js").Member["status"];

/** The server frame whose `type` is `T`. */
export type ServerFrame<T extends ServerMessage["type"]> = Extract<ServerMessage, { type: T }>;
/** The client frame whose `type` is `T`. */
export type ClientFrame<T extends ClientMessage["type"]> = Extract<ClientMessage, { type: T }>;

export type Welcome = ServerFrame<"welcome">;
export type Subscribed = ServerFrame<"subscribed">;
export type ChannelMessage = ServerFrame<"message">;
export type DataChange = ServerFrame<"data_change">;
export type HistoryPage = ServerFrame<"history:page">;
export type BroadcastAck = ServerFrame<"broadcast:ack">;
export type StateAck = ServerFrame<"state:ack">;
export type ErrorFrame = ServerFrame<"error">;
export type RequestId = string | number;
export type JsonObject = { [key: string]: unknown };
