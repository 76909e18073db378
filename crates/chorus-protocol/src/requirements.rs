//! The requirement registry and example frames, parsed from the Markdown of `spec/`.
//!
//! A requirement is a paragraph starting `**PRES-4** (MUST) …`; an example frame is a fenced
//! block whose info string is `json client` or `json server`. The parser takes text, not
//! paths: reading the files is the caller's business.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A requirement's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// An absolute requirement.
    Must,
    /// Recommended; deviations need a reason.
    Should,
    /// Optional.
    May,
    /// A withdrawn requirement kept as a tombstone so its id is never reused.
    Removed,
}

/// One numbered requirement of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// Stable id, e.g. `PRES-4`.
    pub id: String,
    /// Its level.
    pub level: Level,
    /// Area (the spec file's stem, e.g. `presence`).
    pub area: String,
    /// The requirement's text, without the id and level.
    pub text: String,
    /// The spec file, relative to the repository root.
    pub file: String,
}

/// Which side sends an example frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A frame a client sends.
    Client,
    /// A frame a server sends.
    Server,
}

/// An example frame found in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Who sends it.
    pub direction: Direction,
    /// The block's text.
    pub json: String,
    /// 1-based line of the opening fence.
    pub line: usize,
}

/// A malformed requirement paragraph or registry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    /// A paragraph starts like a requirement but its level is not MUST/SHOULD/MAY/REMOVED.
    #[error("{file}:{line}: requirement {id} has unknown level {level:?}")]
    BadLevel {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The id.
        id: String,
        /// The level found.
        level: String,
    },
    /// The same id appears twice.
    #[error("requirement {id} is defined twice ({first} and {second})")]
    Duplicate {
        /// The id.
        id: String,
        /// Where it was first defined.
        first: String,
        /// Where it was defined again.
        second: String,
    },
    /// An id whose shape is not `PREFIX-n`.
    #[error("{file}:{line}: malformed requirement id {id:?}")]
    BadId {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The id.
        id: String,
    },
}

/// `AREA-n` or, for one part of a split requirement, `AREA-na` (one lower-case letter:
/// `VER-6a`, `VER-6b`).
fn valid_id(id: &str) -> bool {
    let Some((prefix, rest)) = id.split_once('-') else {
        return false;
    };
    let number = rest
        .strip_suffix(|c: char| c.is_ascii_lowercase())
        .unwrap_or(rest);
    !prefix.is_empty()
        && prefix.chars().all(|c| c.is_ascii_uppercase())
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
        && !number.starts_with('0')
}

/// Sort key of an id's number part: `6`, then `6a`, `6b`, then `7`.
fn id_number(rest: &str) -> (u32, String) {
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let part = rest[digits.len()..].to_owned();
    (digits.parse().unwrap_or(0), part)
}

/// Parses the requirements of one spec file. `area` is the file stem, `file` its path.
pub fn parse_requirements(
    area: &str,
    file: &str,
    markdown: &str,
) -> Result<Vec<Requirement>, RegistryError> {
    let mut out = Vec::new();
    let mut in_fence = false;
    let lines: Vec<&str> = markdown.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            i += 1;
            continue;
        }
        let trimmed = line.trim_start().trim_start_matches("- ");
        if in_fence || !trimmed.starts_with("**") {
            i += 1;
            continue;
        }
        let start_line = i + 1;
        let rest = &trimmed[2..];
        let Some(end) = rest.find("**") else {
            i += 1;
            continue;
        };
        let id = &rest[..end];
        let after = rest[end + 2..].trim_start();
        // Only `**PREFIX-n** (LEVEL)` starts a requirement; other bold text is prose. An id
        // with an upper-case prefix but a bad number is an error, not prose.
        let looks_like_id = !id.contains(' ')
            && id
                .split_once('-')
                .is_some_and(|(p, _)| !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase()));
        if !looks_like_id || !after.starts_with('(') {
            i += 1;
            continue;
        }
        if !valid_id(id) {
            return Err(RegistryError::BadId {
                file: file.into(),
                line: start_line,
                id: id.into(),
            });
        }
        let Some(close) = after.find(')') else {
            i += 1;
            continue;
        };
        let level = match &after[1..close] {
            "MUST" => Level::Must,
            "SHOULD" => Level::Should,
            "MAY" => Level::May,
            "REMOVED" => Level::Removed,
            other => {
                return Err(RegistryError::BadLevel {
                    file: file.into(),
                    line: start_line,
                    id: id.into(),
                    level: other.into(),
                })
            }
        };
        // The paragraph continues until a blank line, a fence, a heading or a new item.
        let mut text = after[close + 1..].trim().to_owned();
        i += 1;
        while i < lines.len() {
            let next = lines[i].trim();
            if next.is_empty()
                || next.starts_with("```")
                || next.starts_with('#')
                || next.starts_with("- ")
                || next.starts_with("**")
            {
                break;
            }
            text.push(' ');
            text.push_str(next);
            i += 1;
        }
        out.push(Requirement {
            id: id.into(),
            level,
            area: area.into(),
            text,
            file: file.into(),
        });
    }
    Ok(out)
}

/// Checks that ids are unique across files; returns the registry sorted by area then number.
pub fn build_registry(mut all: Vec<Requirement>) -> Result<Vec<Requirement>, RegistryError> {
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    for r in &all {
        if let Some(first) = seen.insert(r.id.clone(), r.file.clone()) {
            return Err(RegistryError::Duplicate {
                id: r.id.clone(),
                first,
                second: r.file.clone(),
            });
        }
    }
    all.sort_by(|a, b| {
        let key = |r: &Requirement| {
            let (p, n) = r.id.split_once('-').unwrap_or((&r.id, "0"));
            (r.area.clone(), p.to_owned(), id_number(n))
        };
        key(a).cmp(&key(b))
    });
    Ok(all)
}

/// Extracts the example frames (```` ```json client ```` / ```` ```json server ```` blocks).
pub fn extract_examples(markdown: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut current: Option<(Direction, usize, String)> = None;
    let mut in_other_fence = false;
    for (n, line) in markdown.lines().enumerate() {
        let t = line.trim();
        if let Some((dir, start, mut body)) = current.take() {
            if t.starts_with("```") {
                out.push(Example {
                    direction: dir,
                    json: body,
                    line: start,
                });
            } else {
                body.push_str(line);
                body.push('\n');
                current = Some((dir, start, body));
            }
            continue;
        }
        if in_other_fence {
            if t.starts_with("```") {
                in_other_fence = false;
            }
            continue;
        }
        if let Some(info) = t.strip_prefix("```") {
            let words: Vec<&str> = info.split_whitespace().collect();
            match words.as_slice() {
                ["json", "client"] => current = Some((Direction::Client, n + 1, String::new())),
                ["json", "server"] => current = Some((Direction::Server, n + 1, String::new())),
                _ => in_other_fence = true,
            }
        }
    }
    out
}

/// Builds the registry from spec sources given as `(path, markdown)`; the area of each file
/// is its stem. Files named `README.md` or `concordance.md` hold no requirements of their own
/// but are parsed too (a requirement there would still be registered).
pub fn registry_from_sources(
    sources: &[(String, String)],
) -> Result<Vec<Requirement>, RegistryError> {
    let mut all = Vec::new();
    for (path, text) in sources {
        let stem = path
            .rsplit('/')
            .next()
            .unwrap_or(path)
            .trim_end_matches(".md")
            .to_owned();
        all.extend(parse_requirements(&stem, path, text)?);
    }
    build_registry(all)
}

/// The registry as the pretty JSON committed in `spec/requirements.json`.
pub fn registry_json(registry: &[Requirement]) -> String {
    let text = serde_json::to_string_pretty(registry).unwrap_or_default();
    format!("{text}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Presence\n\n**PRES-1** (MUST) A server MUST key members by user id.\nContinued here.\n\n- **PRES-2** (SHOULD) A client SHOULD ping.\n\n```json client\n{\"type\":\"ping\"}\n```\n\n```text\n**PRES-9** (MUST) not a requirement\n```\n";

    #[test]
    fn parses_paragraph_requirements() {
        let reqs = parse_requirements("presence", "spec/presence.md", DOC).unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].id, "PRES-1");
        assert_eq!(reqs[0].level, Level::Must);
        assert_eq!(
            reqs[0].text,
            "A server MUST key members by user id. Continued here."
        );
        assert_eq!(reqs[1].level, Level::Should);
    }

    #[test]
    fn sub_ids_of_split_requirements_parse_and_sort_after_their_number() {
        let doc = "**V-7** (MUST) x MUST.\n\n**V-6b** (MUST) b MUST.\n\n**V-6a** (MAY) a MAY.\n";
        let reqs = build_registry(parse_requirements("v", "v.md", doc).unwrap()).unwrap();
        let ids: Vec<_> = reqs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["V-6a", "V-6b", "V-7"]);
        for bad in [
            "**V-6A** (MUST) x MUST.",
            "**V-6ab** (MUST) x MUST.",
            "**V-a** (MUST) x MUST.",
        ] {
            assert!(parse_requirements("v", "v.md", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_level_is_an_error() {
        let e = parse_requirements("x", "x.md", "**X-1** (MUSTN'T) no").unwrap_err();
        assert!(matches!(e, RegistryError::BadLevel { .. }));
    }

    #[test]
    fn duplicates_are_rejected() {
        let a = parse_requirements("a", "a.md", "**A-1** (MUST) x").unwrap();
        let b = parse_requirements("a", "b.md", "**A-1** (MAY) y").unwrap();
        let e = build_registry([a, b].concat()).unwrap_err();
        assert!(matches!(e, RegistryError::Duplicate { .. }));
    }

    #[test]
    fn extracts_only_tagged_examples() {
        let ex = extract_examples(DOC);
        assert_eq!(ex.len(), 1);
        assert_eq!(ex[0].direction, Direction::Client);
        assert_eq!(ex[0].json.trim(), "{\"type\":\"ping\"}");
    }
}
