/** A minimal typed event emitter: `on` returns the function that removes the listener. */
export class Emitter<Events extends { [name: string]: unknown }> {
  private listeners = new Map<keyof Events, Set<(value: never) => void>>();

  /** Calls `fn` for every `name` event until the returned function is called. */
  on<K extends keyof Events>(name: K, fn: (value: Events[K]) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(fn as (value: never) => void);
    return () => {
      set.delete(fn as (value: never) => void);
    };
  }

  /** Calls `fn` for the next `name` event only. */
  once<K extends keyof Events>(name: K, fn: (value: Events[K]) => void): () => void {
    const off = this.on(name, (value) => {
      off();
      fn(value);
    });
    return off;
  }

  /** Delivers `value` to every listener of `name`; a throwing listener does not stop the others. */
  emit<K extends keyof Events>(name: K, value: Events[K]): void {
    const set = this.listeners.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as (value: Events[K]) => void)(value);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}
