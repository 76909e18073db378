// The collaborative demo page of `chorus serve --demo`, built on @chorus-rt/client only:
// presence avatars and statuses, live cursors, a chat with history, and a shared todo list
// whose concurrent edits use compare-and-set.
import { ChorusClient, ConflictError, UnknownOutcomeError } from "../src/index.js";
import type { ChannelMessage, CursorState, Member, PresenceStatus } from "../src/index.js";

const ROOM = "presence-demo"; // presence + cursors
const CHAT = "demo-chat"; // messages + history
const BOARD = "demo-todos"; // shared state

interface Todo {
  id: string;
  text: string;
  done: boolean;
  by: string;
}
interface ChatItem {
  seq: number | null;
  nonce: string;
  from: string;
  name: string;
  color: string;
  text: string;
  ts: number;
  pending?: "sending" | "checking";
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const palette = ["#7c8cff", "#3ddc97", "#f5c542", "#ff6b6b", "#4cc9f0", "#f72585", "#b5e48c", "#ffa62b"];
const rid = () => Math.random().toString(36).slice(2, 10);

function el(tag: string, props: Record<string, string> = {}, ...kids: Array<Node | string>): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

function b64url(s: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

/**
 * An UNSIGNED token: `chorus serve --demo` runs in development mode without a secret, where
 * the server checks the claims but cannot check a signature. Real applications get a
 * signed JWT from their backend and hand the client a token provider instead.
 */
function demoToken(sub: string, name: string, color: string): string {
  return [b64url('{"alg":"HS256","typ":"JWT"}'), b64url(JSON.stringify({ sub, profile: { name, color } })), "unsigned"].join(".");
}

function profileOf(m: Member | undefined): { name: string; color: string } {
  const p = (m?.profile ?? {}) as { name?: unknown; color?: unknown };
  return { name: typeof p.name === "string" ? p.name : (m?.user_id ?? "?"), color: typeof p.color === "string" ? p.color : "#8f96c4" };
}

function avatar(name: string, color: string, status?: string): HTMLElement {
  const a = el("span", { class: "avatar", style: `background:${color}`, text: name.slice(0, 1).toUpperCase() });
  if (status) a.append(el("span", { class: "dot", "data-status": status }));
  return a;
}

function start(name: string): void {
  // One id per browser profile: every tab of it is the same user, hence one member (PRES-1).
  let id = localStorage.getItem("chorus-demo-id");
  if (!id) {
    id = `u-${rid()}`;
    localStorage.setItem("chorus-demo-id", id);
  }
  const color = palette[[...name].reduce((h, c) => h * 31 + c.charCodeAt(0), 7) % palette.length] ?? "#7c8cff";
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const client = new ChorusClient({ url, token: () => demoToken(id, name, color) });
  const presence = client.presence(ROOM);
  const cursors = client.cursors(ROOM);
  const chat = client.channel(CHAT);
  const state = client.state(BOARD);
  void chat.subscribe();
  addEventListener("pagehide", () => client.close()); // CLIENT-9: leave at once

  // ---- connection and me -------------------------------------------------------------
  const conn = $("conn");
  client.events.on("status", (s) => {
    conn.dataset.status = s;
    conn.textContent = { idle: "idle", connecting: "connecting…", open: "live", waiting: "reconnecting…", stopped: "stopped", closed: "closed" }[s];
  });
  const statusSelect = el("select", { id: "status", "aria-label": "your status" }) as HTMLSelectElement;
  for (const s of ["online", "away", "busy"]) statusSelect.append(el("option", { value: s, text: s }));
  statusSelect.onchange = () => void presence.update({ status: statusSelect.value as Exclude<PresenceStatus, "offline"> });
  $("me").append(avatar(name, color), el("strong", { text: name }), statusSelect);

  // ---- presence ----------------------------------------------------------------------
  const renderPeople = (members: ReadonlyMap<string, Member>) => {
    const list = $("people");
    list.replaceChildren();
    for (const m of members.values()) {
      const p = profileOf(m);
      const mine = m.user_id === client.userId;
      list.append(
        el("li", { "data-user": m.user_id }, avatar(p.name, p.color, m.status), el("span", { class: "who" }, `${p.name}${mine ? " (you)" : ""}`, el("small", { text: m.status }))),
      );
    }
    $("count").textContent = String(members.size);
    renderCursors();
  };
  presence.onChange(renderPeople);

  // ---- cursors -----------------------------------------------------------------------
  const room = $("room");
  const layer = $("cursors");
  const nodes = new Map<string, HTMLElement>();
  room.addEventListener("pointermove", (e) => {
    const r = room.getBoundingClientRect();
    // Normalised to the room, so windows of different sizes agree; throttled by the client
    // to the server's announced cursor_interval_ms (CURS-18).
    cursors.move(+((e.clientX - r.left) / r.width).toFixed(4), +((e.clientY - r.top) / r.height).toFixed(4));
  });
  function renderCursors(): void {
    const seen = new Set<string>();
    const r = room.getBoundingClientRect();
    for (const c of cursors.others() as CursorState[]) {
      seen.add(c.user_id);
      let node = nodes.get(c.user_id);
      const p = profileOf(presence.members.get(c.user_id));
      if (!node) {
        node = el("div", { class: "cursor", "data-user": c.user_id });
        node.innerHTML = `<svg width="18" height="20" viewBox="0 0 18 20"><path d="M1 1l15 8-7 2-3 7z" fill="${p.color}" stroke="#0b0e20" stroke-width="1.5"/></svg>`;
        node.append(el("span", { class: "label", style: `background:${p.color}`, text: p.name }));
        layer.append(node);
        nodes.set(c.user_id, node);
      }
      node.style.transform = `translate(${c.x * r.width}px, ${c.y * r.height}px)`;
    }
    for (const [user, node] of nodes) {
      if (!seen.has(user)) {
        node.remove();
        nodes.delete(user);
      }
    }
  }
  cursors.onChange(renderCursors);

  // ---- chat: history on load, live messages, nothing lost or doubled ------------------
  const items = new Map<string, ChatItem>(); // by nonce: a message is shown once
  const renderChat = () => {
    const list = $("messages");
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
    list.replaceChildren();
    const sorted = [...items.values()].sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity) || a.ts - b.ts);
    for (const m of sorted) {
      const li = el(
        "li",
        { "data-seq": String(m.seq ?? ""), class: m.pending ? "pending" : "" },
        avatar(m.name, m.color),
        el("div", { class: "bubble" }, el("div", { class: "meta", text: `${m.name} · ${new Date(m.ts).toLocaleTimeString()}${m.pending ? ` · ${m.pending}…` : ""}` }), el("div", { class: "body", text: m.text })),
      );
      list.append(li);
    }
    if (atBottom) list.scrollTop = list.scrollHeight;
  };
  const fromWire = (m: ChannelMessage) => {
    const d = (m.data ?? {}) as Partial<ChatItem>;
    if (typeof d.text !== "string" || typeof d.nonce !== "string") return;
    items.set(d.nonce, { seq: m.seq, nonce: d.nonce, from: m.from ?? "server", name: String(d.name ?? m.from), color: String(d.color ?? "#8f96c4"), text: d.text, ts: m.ts });
  };
  const loadHistory = async () => {
    const page = await chat.history({ limit: 100 });
    for (const m of page.messages) if (m.type === "message") fromWire(m);
    renderChat();
    // A message whose outcome was unknown (the connection dropped before its ack) is
    // resent only if the stream does not have it (CLIENT-18).
    for (const m of items.values()) if (m.pending === "checking") void send(m);
  };
  chat.onMessage((m) => {
    fromWire(m);
    renderChat();
  });
  chat.onSubscribed(() => void loadHistory());
  chat.onReset(() => {
    for (const [k, m] of items) if (!m.pending) items.delete(k);
  });
  async function send(item: ChatItem): Promise<void> {
    item.pending = "sending";
    items.set(item.nonce, item);
    renderChat();
    try {
      const ack = await chat.publish("chat", { text: item.text, nonce: item.nonce, name, color });
      const current = items.get(item.nonce);
      if (current) {
        current.seq = ack.seq;
        current.ts = ack.ts;
        delete current.pending;
      }
    } catch (e) {
      if (e instanceof UnknownOutcomeError) item.pending = "checking";
      else items.delete(item.nonce);
    }
    renderChat();
  }
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    void send({ seq: null, nonce: rid() + rid(), from: id, name, color, text, ts: Date.now() });
  });

  // ---- shared todo list with compare-and-set ----------------------------------------
  const todos = (): Todo[] => (Array.isArray(state.data.todos) ? (state.data.todos as Todo[]) : []);
  const logConflict = (text: string) => {
    const log = $("conflict-log");
    log.prepend(el("li", { text }));
    while (log.children.length > 5) log.lastElementChild?.remove();
  };
  state.onConflict((c) => logConflict(`conflict at v${c.current?.version ?? "?"}: someone wrote first`));
  /** Commutative edits (add, toggle, delete) re-apply themselves on the newer list. */
  const edit = async (what: string, fn: (list: Todo[]) => Todo[] | undefined) => {
    let tries = 0;
    const result = await state.update("todos", (cur) => {
      tries++;
      return fn(Array.isArray(cur) ? (cur as Todo[]) : []);
    });
    if (tries > 1) logConflict(`${what}: re-applied on the newer list after ${tries - 1} conflict(s)`);
    return result;
  };
  let editing: { id: string; version: number } | null = null;
  const conflictBox = $("conflict");
  /**
   * A text edit is not commutative: it was made against the version shown when editing
   * began, and if someone changed the list since, the write is refused (STATE-19) and the
   * user decides. Nothing is silently overwritten.
   */
  async function saveText(todoId: string, text: string, since: number): Promise<void> {
    const next = todos().map((t) => (t.id === todoId ? { ...t, text } : t));
    try {
      await state.set("todos", next, { expectedVersion: since });
      conflictBox.hidden = true;
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e;
      conflictBox.hidden = false;
      conflictBox.replaceChildren(
        el("strong", { text: "Someone changed the list while you were editing." }),
        el("div", { text: `Your text "${text}" was not saved (you edited v${since}, the list is now v${e.current?.version ?? "?"}).` }),
      );
      const apply = el("button", { id: "conflict-apply", text: "Apply my text to the new list" });
      const discard = el("button", { class: "ghost", id: "conflict-discard", text: "Discard my edit" });
      apply.onclick = () => {
        conflictBox.hidden = true;
        void edit("text edit", (list) => (list.some((t) => t.id === todoId) ? list.map((t) => (t.id === todoId ? { ...t, text } : t)) : undefined));
      };
      discard.onclick = () => {
        conflictBox.hidden = true;
      };
      conflictBox.append(el("div", { class: "actions" }, apply, discard));
    }
  }
  const renderTodos = () => {
    $("version").textContent = state.version === null ? "v–" : `v${state.version}`;
    const list = $("todos");
    const focused = editing;
    list.replaceChildren();
    for (const t of todos()) {
      const box = el("input", { type: "checkbox", "aria-label": `done: ${t.text}` }) as HTMLInputElement;
      box.checked = t.done;
      box.onchange = () => void edit("toggle", (l) => l.map((x) => (x.id === t.id ? { ...x, done: box.checked } : x)));
      const del = el("button", { class: "ghost", title: "delete", text: "×" });
      del.onclick = () => void edit("delete", (l) => l.filter((x) => x.id !== t.id));
      let body: HTMLElement;
      if (focused?.id === t.id) {
        const input = el("input", { class: "edit", value: t.text, maxlength: "120" }) as HTMLInputElement;
        const since = focused.version;
        input.onkeydown = (e) => {
          if (e.key === "Enter") {
            editing = null;
            void saveText(t.id, input.value.trim() || t.text, since);
            renderTodos();
          } else if (e.key === "Escape") {
            editing = null;
            renderTodos();
          }
        };
        body = input;
        queueMicrotask(() => input.focus());
      } else {
        body = el("span", { class: "text", text: t.text, title: "click to edit" });
        body.onclick = () => {
          editing = { id: t.id, version: state.version ?? 0 };
          renderTodos();
        };
      }
      list.append(el("li", { "data-id": t.id, class: t.done ? "done" : "" }, box, body, el("span", { class: "by", text: t.by }), del));
    }
  };
  state.onChange(renderTodos);
  $("todo-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("todo-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    void edit("add", (l) => [...l, { id: rid(), text, done: false, by: name }]);
  });

  // For the browser tests and the curious: the client and its handles.
  (window as unknown as { demo: unknown }).demo = { client, presence, cursors, chat, state, items };
}

const asked = new URLSearchParams(location.search).get("name") ?? localStorage.getItem("chorus-demo-name");
if (asked) start(asked.slice(0, 24));
else {
  const join = $("join");
  join.hidden = false;
  $<HTMLInputElement>("join-name").focus();
  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $<HTMLInputElement>("join-name").value.trim().slice(0, 24);
    if (!name) return;
    localStorage.setItem("chorus-demo-name", name);
    join.hidden = true;
    start(name);
  });
}
