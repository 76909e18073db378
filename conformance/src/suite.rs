//! The suite's inputs: fixtures, the requirement registry and the unobservable list, either
//! embedded at build time or read from a checkout; plus the static checks a fixture set
//! must pass before any server is involved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chorus_protocol::requirements::{build_registry, parse_requirements, Level, Requirement};
use serde_json::Value;
use thiserror::Error;

use crate::fixture::{self, Fixture, FixtureError, Step};
use crate::validate::FrameSchema;

pub(crate) mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// A fixture and the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedFixture {
    /// Path relative to the repository root, e.g. `fixtures/connection/ping-pong.json`.
    pub file: String,
    /// The parsed case.
    pub fixture: Fixture,
}

/// Everything a run grades against.
#[derive(Debug, Clone, Default)]
pub struct Suite {
    /// Cases, sorted by id.
    pub fixtures: Vec<LoadedFixture>,
    /// The spec's requirements.
    pub requirements: Vec<Requirement>,
    /// Requirement id -> why it cannot be observed on the wire.
    pub unobservable: BTreeMap<String, String>,
}

/// The suite's inputs could not be read.
#[derive(Debug, Error)]
pub enum SuiteError {
    /// A fixture does not parse.
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    /// The spec's requirements do not parse.
    #[error("requirements: {0}")]
    Registry(String),
    /// `unobservable.json` is not an object of strings.
    #[error("unobservable.json: {0}")]
    Unobservable(serde_json::Error),
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Suite {
    /// The fixtures, spec and unobservable list compiled into this library.
    pub fn embedded() -> Result<Suite, SuiteError> {
        let fixtures = parse_fixtures(embedded::FIXTURES.iter().map(|(f, t)| (f.to_string(), *t)))?;
        let requirements = match embedded::REQUIREMENTS_JSON {
            Some(text) => requirements_from_json(text)?,
            None => requirements_from_markdown(
                embedded::SPEC
                    .iter()
                    .map(|(f, t)| (f.to_string(), t.to_string())),
            )?,
        };
        let unobservable = match embedded::UNOBSERVABLE_JSON {
            Some(text) => serde_json::from_str(text).map_err(SuiteError::Unobservable)?,
            None => BTreeMap::new(),
        };
        Ok(Suite {
            fixtures,
            requirements,
            unobservable,
        })
    }

    /// Replaces the fixtures with those found under `dir` (recursively, `*.json`).
    pub fn with_fixture_dir(mut self, dir: &Path) -> Result<Suite, SuiteError> {
        let mut texts = Vec::new();
        for path in walk(dir, "json")? {
            let text = std::fs::read_to_string(&path).map_err(|source| SuiteError::Io {
                path: path.display().to_string(),
                source,
            })?;
            texts.push((path.display().to_string(), text));
        }
        self.fixtures = parse_fixtures(texts.iter().map(|(f, t)| (f.clone(), t.as_str())))?;
        Ok(self)
    }

    /// The fixtures whose id matches one of `run` (all when empty) and none of `skip`.
    pub fn select(&self, run: &[String], skip: &[String]) -> Vec<LoadedFixture> {
        self.fixtures
            .iter()
            .filter(|lf| run.is_empty() || run.iter().any(|g| glob_match(g, &lf.fixture.id)))
            .filter(|lf| !skip.iter().any(|g| glob_match(g, &lf.fixture.id)))
            .cloned()
            .collect()
    }

    /// A requirement by id.
    pub fn requirement(&self, id: &str) -> Option<&Requirement> {
        self.requirements.iter().find(|r| r.id == id)
    }

    /// Static problems of the fixture set: duplicate ids, an id whose area is not its folder,
    /// unknown requirement ids, `send` frames that are not valid client messages.
    pub fn problems(&self) -> Vec<String> {
        let client = FrameSchema::client();
        self.problems_against(client.as_ref().map_err(|e| e.to_string()))
    }

    /// [`Suite::problems`] against a client schema compiled once (the fuzz target of the
    /// loader checks one fixture per input; compiling the schema dominates otherwise).
    pub fn problems_against(&self, client: Result<&FrameSchema, String>) -> Vec<String> {
        let mut out = Vec::new();
        let known: BTreeSet<&str> = self.requirements.iter().map(|r| r.id.as_str()).collect();
        // A removed requirement grades nothing: its replacement must be cited instead.
        let removed: BTreeSet<&str> = self
            .requirements
            .iter()
            .filter(|r| r.level == Level::Removed)
            .map(|r| r.id.as_str())
            .collect();
        let mut ids = BTreeMap::new();
        for lf in &self.fixtures {
            let f = &lf.fixture;
            if let Some(first) = ids.insert(f.id.as_str(), lf.file.as_str()) {
                out.push(format!("{}: id {} already used by {first}", lf.file, f.id));
            }
            let area = f.id.split('.').next().unwrap_or_default();
            let folder = Path::new(&lf.file)
                .parent()
                .and_then(Path::file_name)
                .map(|s| s.to_string_lossy().into_owned());
            if folder.as_deref() != Some(area) {
                out.push(format!("{}: id {} is not in folder {area}/", lf.file, f.id));
            }
            for r in &f.requirements {
                if !known.contains(r.as_str()) {
                    out.push(format!("{}: unknown requirement id {r}", lf.file));
                } else if removed.contains(r.as_str()) {
                    out.push(format!("{}: cites removed requirement {r}", lf.file));
                }
            }
            if let Ok(schema) = &client {
                check_send_frames(&lf.file, &f.steps, schema, &mut out);
            }
            lint_matchers(&lf.file, &f.steps, &mut out);
        }
        if let Err(e) = client {
            out.push(format!("client schema: {e}"));
        }
        for id in self.unobservable.keys() {
            if !known.contains(id.as_str()) {
                out.push(format!("unobservable.json: unknown requirement id {id}"));
            } else if removed.contains(id.as_str()) {
                out.push(format!("unobservable.json: removed requirement {id}"));
            }
        }
        out
    }
}

/// Glob match with `*` (any run of characters) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn check_send_frames(file: &str, steps: &[Step], schema: &FrameSchema, out: &mut Vec<String>) {
    for (i, step) in steps.iter().enumerate() {
        let frames: Vec<&Value> = match step {
            Step::Send(s) => vec![&s.frame],
            Step::SendMany(s) => vec![&s.frame],
            Step::ConnectMany(s) => s.frames.iter().collect(),
            Step::Repeat(r) => {
                check_send_frames(file, &r.steps, schema, out);
                continue;
            }
            _ => continue,
        };
        for raw in frames {
            let frame = static_substitute(raw);
            for (v, paths) in schema.check_with_paths(&frame) {
                if !paths.iter().all(|p| at_placeholder(&frame, p)) {
                    out.push(format!(
                        "{file}: step {} sends an invalid frame: {v}",
                        i + 1
                    ));
                }
            }
        }
    }
}

fn lint_matchers(file: &str, steps: &[Step], out: &mut Vec<String>) {
    for (i, step) in steps.iter().enumerate() {
        for m in step.matchers() {
            for problem in crate::matcher::lint(m) {
                out.push(format!(
                    "{file}: step {} ({}): {problem}",
                    i + 1,
                    step.action()
                ));
            }
            for name in crate::matcher::capture_names(m) {
                if crate::template::RESERVED.contains(&name.as_str()) {
                    out.push(format!(
                        "{file}: step {}: capture name {name:?} is reserved",
                        i + 1
                    ));
                }
            }
        }
        if let Step::Repeat(r) = step {
            lint_matchers(file, &r.steps, out);
        }
    }
}

/// `{run}` and `{i}` have known shapes; `${…}` placeholders are left for `at_placeholder`,
/// and so is a `{"$pad": …}` generator (a string of a length known only at run time).
fn static_substitute(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.contains_key("$pad") => Value::String("${$pad}".into()),
        Value::String(s) => Value::String(s.replace("{run}", "r0-0").replace("{i}", "0")),
        Value::Array(a) => Value::Array(a.iter().map(static_substitute).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), static_substitute(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether the violation's path is at or inside a value that is still a `${…}` template.
fn at_placeholder(frame: &Value, path: &str) -> bool {
    let mut cur = frame;
    let mut pointer = String::new();
    let segments = path.split('/').skip(1);
    for seg in std::iter::once("").chain(segments) {
        if !seg.is_empty() {
            pointer.push('/');
            pointer.push_str(seg);
            match frame.pointer(&pointer) {
                Some(v) => cur = v,
                None => return false,
            }
        }
        if cur.as_str().is_some_and(|s| s.contains("${")) {
            return true;
        }
    }
    false
}

fn parse_fixtures<'a>(
    files: impl Iterator<Item = (String, &'a str)>,
) -> Result<Vec<LoadedFixture>, SuiteError> {
    let mut out = Vec::new();
    for (file, text) in files {
        let fixture = fixture::parse(&file, text)?;
        out.push(LoadedFixture { file, fixture });
    }
    out.sort_by(|a, b| a.fixture.id.cmp(&b.fixture.id));
    Ok(out)
}

fn requirements_from_json(text: &str) -> Result<Vec<Requirement>, SuiteError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| SuiteError::Registry(e.to_string()))?;
    let list = match value {
        Value::Object(mut m) => m.remove("requirements").unwrap_or(Value::Null),
        other => other,
    };
    serde_json::from_value(list).map_err(|e| SuiteError::Registry(e.to_string()))
}

/// Parses every `spec/<area>.md` with the protocol crate's parser.
pub fn requirements_from_markdown(
    files: impl Iterator<Item = (String, String)>,
) -> Result<Vec<Requirement>, SuiteError> {
    let mut all = Vec::new();
    for (file, text) in files {
        let area = Path::new(&file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reqs = parse_requirements(&area, &file, &text)
            .map_err(|e| SuiteError::Registry(e.to_string()))?;
        all.extend(reqs);
    }
    build_registry(all).map_err(|e| SuiteError::Registry(e.to_string()))
}

fn walk(dir: &Path, ext: &str) -> Result<Vec<std::path::PathBuf>, SuiteError> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| SuiteError::Io {
            path: d.display().to_string(),
            source,
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                // fixtures/client/ holds client cases, a format of their own.
                if p.file_name().is_some_and(|n| n == "client") {
                    continue;
                }
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == ext) {
                found.push(p);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_match_ids() {
        assert!(glob_match("presence.*", "presence.multi-tab.join"));
        assert!(glob_match("*.join", "presence.multi-tab.join"));
        assert!(glob_match("p?esence.*", "presence.x"));
        assert!(!glob_match("rooms.*", "presence.x"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn placeholder_positions_are_exempt() {
        let frame = json!({"type": "broadcast", "seq": "${x}"});
        assert!(at_placeholder(&frame, "/seq"));
        assert!(!at_placeholder(&frame, "/type"));
    }

    fn send_problems(frame: Value) -> Vec<String> {
        let mut out = Vec::new();
        let steps = vec![Step::Send(fixture::Send {
            send: "a".into(),
            frame,
        })];
        check_send_frames("f.json", &steps, &FrameSchema::client().unwrap(), &mut out);
        out
    }

    #[test]
    fn placeholder_inside_an_optional_object_is_exempt() {
        let frame = json!({"type": "subscribe", "channel": "presence-{run}",
            "room": {"max_users": "${limits.max_room_users}+1"}});
        assert_eq!(send_problems(frame), Vec::<String>::new());
        // A real mistake next to it is still found.
        let frame = json!({"type": "subscribe", "channel": "presence-{run}",
            "room": {"max_users": "${limits.max_room_users}+1", "colour": "red"}});
        assert_eq!(send_problems(frame).len(), 1);
    }

    #[test]
    fn pad_generators_are_placeholders() {
        let frame = json!({"type": "subscribe", "channel": {"$pad": "${limits.max_channel_name_len}", "prefix": "c-{run}-"}});
        assert_eq!(send_problems(frame), Vec::<String>::new());
    }

    #[test]
    fn invalid_send_frame_is_a_problem() {
        let f = fixture::parse(
            "fixtures/connection/x.json",
            r#"{"id":"connection.x.y","title":"t","requirements":["CONN-12"],"level":"MUST",
            "clients":{"a":{}},"steps":[{"connect":"a"},{"send":"a","frame":{"type":"ping","from":"me"}}]}"#,
        )
        .unwrap();
        let suite = Suite {
            fixtures: vec![LoadedFixture {
                file: "fixtures/connection/x.json".into(),
                fixture: f,
            }],
            requirements: vec![],
            unobservable: BTreeMap::new(),
        };
        let p = suite.problems();
        assert!(
            p.iter()
                .any(|p| p.contains("invalid frame") && p.contains("ping")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("unknown requirement id CONN-12")),
            "{p:?}"
        );
    }
}
