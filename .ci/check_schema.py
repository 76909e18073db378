#!/usr/bin/env python3
"""Independent check of schema/ outside Rust (issue: the schema is accepted by a validator
that is not ours): every schema is a valid draft 2020-12 schema for Python's `jsonschema`,
every example frame in spec/*.md validates against the schema of its direction (server
examples against the strict and the consumer schema), and every frame of
crates/chorus-protocol/tests/data/additions.json (what a later v1 revision may add)
validates against the consumer schema and is rejected by the strict one."""
import json
import pathlib
import re
import sys

from jsonschema import Draft202012Validator

ROOT = pathlib.Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^\s*```json (client|server)\s*$")


def examples(text):
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i + 1
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        yield m.group(1), start, "\n".join(body)
        i += 1


def main():
    failures = 0
    validators = {}
    # *.schema.json: schema/asyncapi.json is an AsyncAPI document, validated by its own parser.
    for path in sorted((ROOT / "schema").glob("*.schema.json")):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        validators[path.name] = Draft202012Validator(schema)
        print(f"ok schema/{path.name} is a valid draft 2020-12 schema")
    checked = 0
    for md in sorted((ROOT / "spec").glob("*.md")):
        for direction, line, body in examples(md.read_text()):
            frame = json.loads(body)
            names = [f"{direction}.schema.json"]
            if direction == "server":
                names.append("server.consumer.schema.json")
            checked += 1
            for name in names:
                for err in validators[name].iter_errors(frame):
                    failures += 1
                    print(f"FAIL spec/{md.name}:{line} ({name}): {err.message} at /{'/'.join(map(str, err.path))}")
    print(f"{checked} spec example frames validated, {failures} failures")
    additions = json.loads((ROOT / "crates/chorus-protocol/tests/data/additions.json").read_text())
    for entry in additions["frames"]:
        name, frame = entry["name"], entry["frame"]
        for err in validators["server.consumer.schema.json"].iter_errors(frame):
            failures += 1
            print(f"FAIL additions.json {name!r}: the consumer schema rejects it: {err.message}")
        if validators["server.schema.json"].is_valid(frame):
            failures += 1
            print(f"FAIL additions.json {name!r}: the strict schema accepts an addition v1 does not define")
    print(f"{len(additions['frames'])} forward-compatible frames checked against both server schemas")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
