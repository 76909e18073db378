// Builds the demo page into demo/dist/ (committed: `chorus serve --demo` embeds it, so the
// server needs no Node.js). `--check` exits 1 when the committed build is not current.
import { build } from "esbuild";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const out = await build({
  entryPoints: [here("./main.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  legalComments: "none",
  write: false,
});
const files = {
  "demo.js": out.outputFiles[0].contents,
  "index.html": await readFile(here("./index.html")),
  "demo.css": await readFile(here("./demo.css")),
};
const check = process.argv.includes("--check");
let stale = 0;
await mkdir(here("./dist"), { recursive: true });
for (const [name, content] of Object.entries(files)) {
  const path = here(`./dist/${name}`);
  if (check) {
    const current = await readFile(path).catch(() => Buffer.alloc(0));
    if (!current.equals(Buffer.from(content))) {
      console.error(`stale: clients/typescript/demo/dist/${name} (run \`npm run demo:build\` and commit it)`);
      stale++;
    }
  } else {
    await writeFile(path, content);
    console.log(`wrote demo/dist/${name} (${content.length} bytes)`);
  }
}
if (stale) process.exit(1);
