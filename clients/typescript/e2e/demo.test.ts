// End-to-end tests of the demo page in Debian's Chromium (Playwright, playwright-core), against
// the reference server started by `chorus serve --demo` on a data directory of its own. Two
// browser contexts are two users. Screenshots go to docs/demo/.
//
//   CHORUS_BIN=target/debug/chorus node --test build/e2e/
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

const pkg = resolve(fileURLToPath(new URL("../../", import.meta.url)));
const repo = resolve(pkg, "../..");
const bin = process.env.CHORUS_BIN ? resolve(process.env.CHORUS_BIN) : join(repo, "target/debug/chorus");
const shots = join(repo, "docs/demo");
const dataDir = mkdtempSync(join(tmpdir(), "chorus-demo-e2e-"));
let port = 0;
let server: ChildProcess | null = null;
let browser: Browser;

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? res(a.port) : rej(new Error("no port"))));
    });
  });
}

/** Starts `chorus serve --demo` and resolves once it printed its URL. */
function startServer(): Promise<void> {
  return new Promise((res, rej) => {
    const child = spawn(bin, ["serve", "--demo", "--port", String(port), "--data-dir", dataDir], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: "warn" },
    });
    server = child;
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("Chorus demo: open")) res();
    });
    child.stderr!.on("data", () => undefined);
    child.once("exit", (code) => rej(new Error(`server exited with ${code}: ${out}`)));
  });
}

/** SIGTERM: the server drains (close 1001) and exits. */
function stopServer(): Promise<void> {
  const child = server;
  server = null;
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((res) => {
    child.once("exit", () => res());
    child.kill("SIGTERM");
  });
}

async function open(context: BrowserContext, name: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`http://localhost:${port}/?name=${encodeURIComponent(name)}`);
  await page.waitForFunction(() => document.getElementById("conn")?.dataset.status === "open");
  return page;
}

const userId = (page: Page) => page.evaluate(() => localStorage.getItem("chorus-demo-id"));
const chatTexts = (page: Page) => page.$$eval("#messages li .body", (els) => els.map((e) => e.textContent ?? ""));
const todoTexts = (page: Page) => page.$$eval("#todos li .text, #todos li input.edit", (els) => els.map((e) => (e instanceof HTMLInputElement ? e.value : (e.textContent ?? ""))));

async function until(what: string, page: Page, fn: () => Promise<boolean>, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) {
      await page.screenshot({ path: join(tmpdir(), `chorus-e2e-failure-${Date.now()}.png`) });
      throw new Error(`timed out waiting until ${what}`);
    }
    await page.waitForTimeout(50);
  }
}

let alice: Page;
let bob: Page;
let aliceCtx: BrowserContext;
let bobCtx: BrowserContext;

before(async () => {
  assert.ok(existsSync(bin), `no server binary at ${bin}: run \`cargo build -p chorus-cli\` or set CHORUS_BIN`);
  mkdirSync(shots, { recursive: true });
  port = await freePort();
  await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  aliceCtx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  bobCtx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  alice = await open(aliceCtx, "Alice");
  bob = await open(bobCtx, "Bob");
});

after(async () => {
  await browser?.close();
  await stopServer();
  rmSync(dataDir, { recursive: true, force: true });
});

test("each user sees the other join, one member per user however many tabs", async () => {
  for (const page of [alice, bob]) {
    await until("both are present", page, async () => (await page.locator("#people li").count()) === 2);
  }
  const names = await alice.$$eval("#people li .who", (els) => els.map((e) => e.firstChild?.textContent));
  assert.deepEqual(names.sort(), ["Alice (you)", "Bob"]);
  // A second tab of Alice is the same member (PRES-1, PRES-9): still two people.
  const tab2 = await open(aliceCtx, "Alice");
  await tab2.waitForTimeout(300);
  assert.equal(await bob.locator("#people li").count(), 2);
  assert.equal(await tab2.locator("#people li").count(), 2);
  await tab2.close();
  await bob.waitForTimeout(300);
  assert.equal(await bob.locator("#people li").count(), 2, "closing one of two tabs does not make Alice leave");
});

test("a status change reaches the other user", async () => {
  await bob.selectOption("#status", "away");
  const bobId = await userId(bob);
  await until("Alice sees Bob away", alice, async () => (await alice.locator(`#people li[data-user="${bobId}"] .dot`).getAttribute("data-status")) === "away");
});

test("cursors move live, labelled with the user's name", async () => {
  const bobId = await userId(bob);
  const box = (await bob.locator("#room").boundingBox())!;
  await bob.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
  await bob.mouse.move(box.x + box.width * 0.62, box.y + box.height * 0.4, { steps: 8 });
  const cursor = alice.locator(`.cursor[data-user="${bobId}"]`);
  await cursor.waitFor({ state: "attached", timeout: 5000 });
  assert.equal(await cursor.locator(".label").textContent(), "Bob");
  await until("Alice's view of Bob's cursor reaches 62% / 40%", alice, async () => {
    const t = await cursor.evaluate((e) => (e as HTMLElement).style.transform);
    const m = /translate\(([\d.]+)px, ([\d.]+)px\)/.exec(t);
    const room = (await alice.locator("#room").boundingBox())!;
    return !!m && Math.abs(Number(m[1]) / room.width - 0.62) < 0.01 && Math.abs(Number(m[2]) / room.height - 0.4) < 0.01;
  });
  // Alice's own cursor is never drawn on her page.
  const aliceId = await userId(alice);
  assert.equal(await alice.locator(`.cursor[data-user="${aliceId}"]`).count(), 0);
});

async function say(page: Page, text: string): Promise<void> {
  await page.fill("#chat-input", text);
  await page.press("#chat-input", "Enter");
}

test("chat messages reach the other user", async () => {
  await say(alice, "Hi Bob, the spec is ready for review");
  await until("Bob sees Alice's message", bob, async () => (await chatTexts(bob)).includes("Hi Bob, the spec is ready for review"));
  await say(bob, "Great, looking now");
  await until("Alice sees Bob's reply", alice, async () => (await chatTexts(alice)).includes("Great, looking now"));
  assert.deepEqual(await chatTexts(alice), await chatTexts(bob));
});

test("shared todos: concurrent adds both land; a stale text edit is refused and shown, not lost", async () => {
  // Both add at the same moment: each add is a compare-and-set that re-applies itself on
  // the newer list after a conflict, so neither is lost.
  await Promise.all([
    alice.fill("#todo-input", "Write the conformance fixtures").then(() => alice.press("#todo-input", "Enter")),
    bob.fill("#todo-input", "Ship the TypeScript client").then(() => bob.press("#todo-input", "Enter")),
  ]);
  for (const page of [alice, bob]) {
    await until("both todos everywhere", page, async () => (await todoTexts(page)).length === 2);
  }
  assert.deepEqual((await todoTexts(alice)).sort(), (await todoTexts(bob)).sort());
  // Bob starts editing Alice's todo; meanwhile Alice ticks it off.
  await bob.click("#todos li .text >> text=Write the conformance fixtures");
  await alice.check("#todos li:has-text('Write the conformance fixtures') input[type=checkbox]");
  await until("Bob sees it done", bob, async () => (await bob.locator("#todos li.done").count()) === 1);
  await bob.fill("#todos input.edit", "Write the client fixtures");
  await bob.press("#todos input.edit", "Enter");
  // The edit was computed from an older version: refused (STATE-19) and shown to Bob.
  await bob.locator("#conflict:not([hidden])").waitFor({ timeout: 5000 });
  assert.match((await bob.textContent("#conflict")) ?? "", /changed the list while you were editing/);
  assert.ok((await todoTexts(alice)).includes("Write the conformance fixtures"), "nothing was overwritten");
  await bob.screenshot({ path: join(shots, "conflict.png") });
  // Bob applies his text to the new list: Alice's tick survives, his text lands.
  await bob.click("#conflict-apply");
  for (const page of [alice, bob]) {
    await until("the new text everywhere", page, async () => (await todoTexts(page)).includes("Write the client fixtures"));
    assert.equal(await page.locator("#todos li.done .text").textContent(), "Write the client fixtures");
  }
  const va = await alice.textContent("#version");
  assert.equal(va, await bob.textContent("#version"));
});

test("screenshots of two users collaborating", async () => {
  const box = (await alice.locator("#room").boundingBox())!;
  await alice.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.7, { steps: 5 });
  const bobId = await userId(bob);
  const aliceId = await userId(alice);
  await bob.locator(`.cursor[data-user="${aliceId}"]`).waitFor({ timeout: 5000 });
  await alice.locator(`.cursor[data-user="${bobId}"]`).waitFor({ timeout: 5000 });
  await alice.waitForTimeout(200);
  await alice.screenshot({ path: join(shots, "alice.png") });
  await bob.screenshot({ path: join(shots, "bob.png") });
});

test("the server restarts on its data directory: nothing lost, nothing doubled, history on reload", async () => {
  const before = await chatTexts(alice);
  await stopServer();
  for (const page of [alice, bob]) {
    await until("the page shows it is reconnecting", page, async () => (await page.getAttribute("#conn", "data-status")) !== "open");
  }
  // Written while the server is down: queued by the client until the next welcome.
  await say(alice, "Sent while the server was down (Alice)");
  await say(bob, "Sent while the server was down (Bob)");
  await startServer();
  const expected = [...before, "Sent while the server was down (Alice)", "Sent while the server was down (Bob)"];
  for (const page of [alice, bob]) {
    await until("reconnected", page, async () => (await page.getAttribute("#conn", "data-status")) === "open", 20000);
    // Each message confirmed by the server (not pending) and shown once.
    await until("both offline messages, confirmed, once each", page, async () => {
      const texts = await chatTexts(page);
      const pending = await page.locator("#messages li.pending").count();
      return pending === 0 && texts.length === expected.length && expected.every((t) => texts.includes(t));
    }, 15000);
  }
  // Live traffic continues after the restart.
  await say(bob, "Back online");
  await until("Alice sees the live message", alice, async () => (await chatTexts(alice)).includes("Back online"));
  // A reload shows the whole conversation from history, each message once.
  await bob.reload();
  await bob.waitForFunction(() => document.getElementById("conn")?.dataset.status === "open");
  await until("history after reload", bob, async () => (await chatTexts(bob)).length === expected.length + 1);
  const afterReload = await chatTexts(bob);
  assert.deepEqual(new Set(afterReload).size, afterReload.length, "no duplicates");
  assert.deepEqual(afterReload, await chatTexts(alice), "both see the same conversation in the same order");
  // The todo list survived the restart too (persisted state, same epoch).
  assert.ok((await todoTexts(bob)).includes("Write the client fixtures"));
  await bob.screenshot({ path: join(shots, "after-restart.png") });
});
