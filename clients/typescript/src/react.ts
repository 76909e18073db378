// Thin React bindings, named after the seed hooks (spec/concordance.md). React is a peer:
// pass its `useEffect`/`useState`/`useSyncExternalStore` in once with `bindReact(React)`,
// so this package has no dependency on it.
import type { ChorusClient, Cursors, Presence, SharedState, SubscribeOptions } from "./client.js";
import type { ChannelMessage, CursorState, DataChange, JsonObject, Member } from "./types.js";

/** The part of React these hooks use. */
export interface ReactLike {
  useSyncExternalStore<T>(subscribe: (onChange: () => void) => () => void, get: () => T): T;
  useEffect(effect: () => void | (() => void), deps: unknown[]): void;
  useMemo<T>(make: () => T, deps: unknown[]): T;
}

/** A snapshot store for `useSyncExternalStore`: a new snapshot object after every change. */
function store<T>(listen: (cb: () => void) => () => void, compute: () => T) {
  let snap = compute();
  return {
    subscribe: (cb: () => void) => listen(() => ((snap = compute()), cb())),
    get: () => snap,
  };
}

export function bindReact(React: ReactLike) {
  /** Seed `usePresence({room})`: the member map of a presence channel, self included. */
  function usePresence(client: ChorusClient, channel: string, opts?: SubscribeOptions) {
    const s = React.useMemo(() => {
      const presence: Presence = client.presence(channel, opts);
      return { presence, ...store((cb) => presence.onChange(cb), () => new Map(presence.members) as ReadonlyMap<string, Member>) };
    }, [client, channel]);
    const members = React.useSyncExternalStore(s.subscribe, s.get);
    return { presence: s.presence, members, others: [...members.values()].filter((m) => m.user_id !== client.userId) };
  }

  /** Seed `useCursors({room, throttle})`: other users' cursors and a throttled `move`. */
  function useCursors(client: ChorusClient, channel: string) {
    const s = React.useMemo(() => {
      const cursors: Cursors = client.cursors(channel);
      return { cursors, ...store((cb) => cursors.onChange(cb), () => cursors.others() as CursorState[]) };
    }, [client, channel]);
    return { cursors: React.useSyncExternalStore(s.subscribe, s.get), move: s.cursors.move.bind(s.cursors) };
  }

  /** Seed `useSharedState({room, initialState})`: the data, its version, and the handle for writes. */
  function useSharedState(client: ChorusClient, channel: string) {
    const s = React.useMemo(() => {
      const state: SharedState = client.state(channel);
      return { state, ...store((cb) => state.onChange(cb), () => ({ data: state.data as JsonObject, version: state.version })) };
    }, [client, channel]);
    return { ...React.useSyncExternalStore(s.subscribe, s.get), state: s.state };
  }

  /** Seed `useChannel(name, onMessage)`: calls `onMessage` for every message. */
  function useChannel(client: ChorusClient, channel: string, onMessage: (m: ChannelMessage) => void) {
    const ch = React.useMemo(() => client.channel(channel), [client, channel]);
    React.useEffect(() => {
      void ch.subscribe();
      return ch.onMessage(onMessage);
    }, [ch, onMessage]);
    return ch;
  }

  /** Seed `subscribeToResource(name, id?)`: calls `onChange` for every `data_change`. */
  function useResource(client: ChorusClient, name: string, recordId: string | undefined, onChange: (c: DataChange) => void) {
    React.useEffect(() => {
      const feed = client.resource(name, recordId);
      const off = feed.onChange(onChange);
      return () => {
        off();
        void feed.close();
      };
    }, [client, name, recordId, onChange]);
  }

  return { usePresence, useCursors, useSharedState, useChannel, useResource };
}
