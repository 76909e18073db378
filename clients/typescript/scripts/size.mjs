// The client's size as a browser app ships it: bundled and minified by esbuild, gzipped.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";

const out = await build({
  entryPoints: [new URL("../src/index.ts", import.meta.url).pathname],
  bundle: true,
  minify: true,
  format: "esm",
  platform: "browser",
  write: false,
});
const code = out.outputFiles[0].contents;
console.log(`@chorus-rt/client: ${code.length} bytes minified, ${gzipSync(code, { level: 9 }).length} bytes minified + gzipped`);
