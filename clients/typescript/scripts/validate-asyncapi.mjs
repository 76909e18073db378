// Validates schema/asyncapi.json with the AsyncAPI project's own parser: any diagnostic of
// severity error fails; warnings are printed.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const path = new URL("../../../schema/asyncapi.json", import.meta.url);
const text = await readFile(path, "utf8");
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const severities = ["error", "warning", "info", "hint"];
let errors = 0;
for (const d of diagnostics) {
  const sev = severities[d.severity] ?? String(d.severity);
  if (d.severity === 0) errors++;
  console.log(`${sev}: ${d.code}: ${d.message} at /${(d.path ?? []).join("/")}`);
}
if (!document || errors > 0) {
  console.error(`schema/asyncapi.json: ${errors} error(s)`);
  process.exit(1);
}
const ops = document.operations().length;
const msgs = document.components().messages().length;
console.log(`schema/asyncapi.json: valid AsyncAPI ${document.version()} (${document.channels().length} channels, ${ops} operations, ${msgs} messages), ${diagnostics.length} non-error diagnostic(s)`);
