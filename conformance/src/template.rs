//! Placeholders in fixture strings (FIXTURES.md, "Placeholders"): `{run}`, `{i}` and
//! `${path}` with optional `+n`, `-n`, `*n` arithmetic on whole-string references.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::fixture::NumExpr;

/// Names the harness fills in; captures may not use them.
pub const RESERVED: [&str; 7] = [
    "welcome",
    "limits",
    "heartbeat",
    "capabilities",
    "server",
    "user",
    "token",
];

/// A placeholder could not be resolved: a fixture bug, graded `error`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// `${path}` names nothing.
    #[error("unknown placeholder ${{{0}}}")]
    Unknown(String),
    /// Arithmetic on a value that is not a number, or a malformed expression.
    #[error("placeholder {0:?} is not a number expression")]
    NotNumber(String),
    /// A count or duration evaluated to a negative or non-integer number.
    #[error("{0:?} does not evaluate to a non-negative integer")]
    NotCount(String),
    /// A `{"$pad": …}` generator is malformed.
    #[error("bad $pad generator: {0}")]
    BadPad(String),
}

/// Longest string a `$pad` generator builds (a fixture bug beyond that).
pub const MAX_PAD: u64 = 64 * 1024 * 1024;

/// `{"$pad": n}` / `{"$pad": n, "prefix": "c-{run}-"}` (members already substituted): a
/// string of exactly `n` characters, the prefix followed by `x`s. Lets a fixture build
/// names and payloads sized from the announced limits (LIMIT-3, HTTP-4).
fn pad(m: &Map<String, Value>) -> Result<Option<Value>, TemplateError> {
    let Some(n) = m.get("$pad") else {
        return Ok(None);
    };
    if m.keys().any(|k| k != "$pad" && k != "prefix") {
        return Err(TemplateError::BadPad(
            "only the members $pad and prefix are allowed".into(),
        ));
    }
    let n = match n {
        Value::String(t) => t.trim().parse::<u64>().ok(),
        other => other.as_u64(),
    }
    .filter(|n| *n <= MAX_PAD)
    .ok_or_else(|| TemplateError::BadPad(format!("length {n} is not a count up to {MAX_PAD}")))?;
    let prefix = match m.get("prefix") {
        None => "",
        Some(Value::String(p)) => p.as_str(),
        Some(other) => {
            return Err(TemplateError::BadPad(format!(
                "prefix must be a string, not {other}"
            )))
        }
    };
    let fill = (n as usize)
        .checked_sub(prefix.chars().count())
        .ok_or_else(|| TemplateError::BadPad(format!("prefix {prefix:?} is longer than {n}")))?;
    Ok(Some(Value::String(format!("{prefix}{}", "x".repeat(fill)))))
}

/// Everything placeholders can refer to during one case execution.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The `{run}` prefix.
    pub run: String,
    /// `{i}` inside `repeat`.
    pub iteration: Option<u64>,
    /// Values set by `$capture`.
    pub captures: BTreeMap<String, Value>,
    /// `welcome`, `limits`, `heartbeat`, `capabilities`, `server`, `user`, `token`.
    pub builtins: Map<String, Value>,
}

impl Scope {
    /// Looks up a dotted path.
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut cur = if RESERVED.contains(&first) {
            self.builtins.get(first)?
        } else {
            self.captures.get(first)?
        };
        for p in parts {
            cur = match cur {
                Value::Object(m) => m.get(p)?,
                Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Sets `builtins[group][name]`, e.g. `("welcome", "bob", frame)`.
    pub fn set_builtin(&mut self, group: &str, name: &str, value: Value) {
        let entry = self
            .builtins
            .entry(group.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(name.to_owned(), value);
        }
    }

    /// Substitutes every string of a JSON tree (object keys are left alone).
    pub fn value(&self, v: &Value) -> Result<Value, TemplateError> {
        Ok(match v {
            Value::String(s) => self.string(s)?,
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.value(x)).collect::<Result<_, _>>()?)
            }
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), self.value(x)?);
                }
                pad(&out)?.unwrap_or(Value::Object(out))
            }
            other => other.clone(),
        })
    }

    /// Like [`Scope::value`], but a string referring to an unknown root for which `keep`
    /// holds is left as it is (a matcher's reference to its own capture).
    pub fn value_keeping(
        &self,
        v: &Value,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Value, TemplateError> {
        Ok(match v {
            // A name an earlier step captured means that earlier value (`{"$capture": "prev",
            // "$match": "${prev}+1"}` checks a successor); only a name not captured yet is
            // left for the matcher's own capture.
            Value::String(s) => match self.string(s) {
                Err(TemplateError::Unknown(path))
                    if keep(path.split('.').next().unwrap_or_default()) =>
                {
                    Value::String(self.builtin_text(s))
                }
                other => other?,
            },
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.value_keeping(x, keep))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), self.value_keeping(x, keep)?);
                }
                pad(&out)?.unwrap_or(Value::Object(out))
            }
            other => other.clone(),
        })
    }

    /// Substitutes one string; a whole-string `${path}` keeps the value's JSON type.
    pub fn string(&self, s: &str) -> Result<Value, TemplateError> {
        let s = self.builtin_text(s);
        if let Some((path, ops)) = whole_reference(&s) {
            let mut value = self
                .lookup(path)
                .ok_or_else(|| TemplateError::Unknown(path.into()))?
                .clone();
            for (sign, operand) in ops {
                let n = match operand {
                    Operand::Literal(n) => n,
                    Operand::Path(p) => self
                        .lookup(p)
                        .ok_or_else(|| TemplateError::Unknown(p.into()))?
                        .as_u64()
                        .ok_or_else(|| TemplateError::NotNumber(s.clone()))?,
                };
                value = arithmetic(&value, sign, n).ok_or(TemplateError::NotNumber(s.clone()))?;
            }
            return Ok(value);
        }
        self.text(&s).map(Value::String)
    }

    /// Substitutes into a string that stays a string (paths, headers, raw text).
    pub fn text(&self, s: &str) -> Result<String, TemplateError> {
        let s = self.builtin_text(s);
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let path = &after[..end];
            match self.lookup(path) {
                Some(Value::String(v)) => out.push_str(v),
                Some(v) => out.push_str(&v.to_string()),
                None => return Err(TemplateError::Unknown(path.into())),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Evaluates a count or duration.
    pub fn count(&self, e: &NumExpr) -> Result<u64, TemplateError> {
        match e {
            NumExpr::Literal(n) => Ok(*n),
            NumExpr::Template(t) => {
                let v = self.string(t)?;
                if let Some(n) = v.as_u64() {
                    return Ok(n);
                }
                if let Value::String(s) = &v {
                    if let Ok(n) = s.trim().parse::<u64>() {
                        return Ok(n);
                    }
                }
                Err(TemplateError::NotCount(t.clone()))
            }
        }
    }

    fn builtin_text(&self, s: &str) -> String {
        let mut s = s.replace("{run}", &self.run);
        if let Some(i) = self.iteration {
            s = s.replace("{i}", &i.to_string());
        }
        s
    }
}

/// One operand of an arithmetic placeholder: a number or another `${path}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand<'a> {
    Literal(u64),
    Path(&'a str),
}

/// `"${path}"`, `"${path}+3"` (or `-`, `*`, `/`: integer division, ` min n`, ` max n`),
/// with operands that may be other `${path}`s and several operations, applied left to right
/// (`"${a}+${b}/${c}"` is (a + b) / c): the path and the operations.
fn whole_reference(s: &str) -> Option<(&str, Vec<(char, Operand<'_>)>)> {
    let inner = s.strip_prefix("${")?;
    let end = inner.find('}')?;
    let path = &inner[..end];
    let mut rest = &inner[end + 1..];
    let mut ops = Vec::new();
    while !rest.is_empty() {
        // ` min n` / ` max n` bound a size taken from the announced limits: a case needs a
        // burst of 30 at most, fewer when the server announces fewer (`"${limits.broadcast_burst}
        // min 30"`).
        let (op, after) = if let Some(r) = rest.strip_prefix(" min ") {
            ('<', r.trim_start())
        } else if let Some(r) = rest.strip_prefix(" max ") {
            ('>', r.trim_start())
        } else {
            let sign = rest.chars().next()?;
            if !matches!(sign, '+' | '-' | '*' | '/') {
                return None;
            }
            (sign, &rest[1..])
        };
        let (operand, after) = if let Some(r) = after.strip_prefix("${") {
            let end = r.find('}')?;
            (Operand::Path(&r[..end]), &r[end + 1..])
        } else {
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            (
                Operand::Literal(after[..digits].parse().ok()?),
                &after[digits..],
            )
        };
        ops.push((op, operand));
        rest = after.trim_end();
    }
    Some((path, ops))
}

fn arithmetic(v: &Value, sign: char, n: u64) -> Option<Value> {
    if matches!(sign, '<' | '>') {
        let x = v.as_f64()?;
        let bound = n as f64;
        let keep_x = if sign == '<' { x <= bound } else { x >= bound };
        return Some(if keep_x { v.clone() } else { Value::from(n) });
    }
    if let Some(x) = v.as_i64() {
        let n = i64::try_from(n).ok()?;
        let r = match sign {
            '+' => x.checked_add(n)?,
            '-' => x.checked_sub(n)?,
            '/' => x.checked_div(n)?,
            _ => x.checked_mul(n)?,
        };
        return Some(Value::from(r));
    }
    if let Some(x) = v.as_u64() {
        let r = match sign {
            '+' => x.checked_add(n)?,
            '-' => x.checked_sub(n)?,
            '/' => x.checked_div(n)?,
            _ => x.checked_mul(n)?,
        };
        return Some(Value::from(r));
    }
    let x = v.as_f64()?;
    let n = n as f64;
    Some(Value::from(match sign {
        '+' => x + n,
        '-' => x - n,
        '/' if n != 0.0 => x / n,
        '/' => return None,
        _ => x * n,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        let mut s = Scope {
            run: "r1-2".into(),
            iteration: Some(3),
            ..Scope::default()
        };
        s.captures.insert("seq".into(), json!(41));
        s.captures
            .insert("page".into(), json!({"messages": [{"seq": 7}]}));
        s.builtins
            .insert("limits".into(), json!({"max_frame_bytes": 1024}));
        s.set_builtin("user", "bob", json!("bob-r1"));
        s
    }

    #[test]
    fn whole_reference_keeps_type() {
        assert_eq!(scope().string("${seq}").unwrap(), json!(41));
    }

    #[test]
    fn arithmetic_on_whole_reference() {
        let s = scope();
        assert_eq!(s.string("${seq}+1").unwrap(), json!(42));
        assert_eq!(s.string("${seq}-1").unwrap(), json!(40));
        assert_eq!(
            s.string("${limits.max_frame_bytes}*2").unwrap(),
            json!(2048)
        );
    }

    #[test]
    fn operations_chain_left_to_right_with_references() {
        let s = scope();
        // (41 + 1024) / 1024 + 1
        assert_eq!(
            s.string("${seq}+${limits.max_frame_bytes}/${limits.max_frame_bytes}+1")
                .unwrap(),
            json!(2)
        );
        assert_eq!(s.string("${seq}*2 min 50").unwrap(), json!(50));
        assert_eq!(
            s.string("${seq}+${nope}").unwrap_err(),
            TemplateError::Unknown("nope".into())
        );
        assert!(s.string("${seq}+${user.bob}").is_err(), "not a number");
    }

    #[test]
    fn min_and_max_bound_a_reference() {
        let s = scope();
        assert_eq!(s.string("${seq} min 30").unwrap(), json!(30));
        assert_eq!(s.string("${seq} min 50").unwrap(), json!(41));
        assert_eq!(s.string("${seq} max 50").unwrap(), json!(50));
        assert_eq!(s.string("${seq} max 2").unwrap(), json!(41));
    }

    #[test]
    fn textual_inside_longer_string() {
        let s = scope();
        assert_eq!(
            s.string("c-{run}-${user.bob}-{i}").unwrap(),
            json!("c-r1-2-bob-r1-3")
        );
    }

    #[test]
    fn paths_walk_arrays() {
        assert_eq!(scope().string("${page.messages.0.seq}").unwrap(), json!(7));
    }

    #[test]
    fn unknown_path_is_an_error_naming_it() {
        let e = scope().string("x-${nope.a}").unwrap_err();
        assert_eq!(e, TemplateError::Unknown("nope.a".into()));
    }

    #[test]
    fn pad_builds_a_string_of_the_asked_length() {
        let s = scope();
        let v = s
            .value(&json!({"c": {"$pad": "${limits.max_frame_bytes}+1", "prefix": "c-{run}-"}}))
            .unwrap();
        let c = v["c"].as_str().unwrap();
        assert_eq!(c.len(), 1025);
        assert!(c.starts_with("c-r1-2-x"));
        assert_eq!(s.value(&json!({"$pad": 3})).unwrap(), json!("xxx"));
        assert!(s.value(&json!({"$pad": 2, "prefix": "abc"})).is_err());
        assert!(s.value(&json!({"$pad": 2, "suffix": "a"})).is_err());
    }

    #[test]
    fn kept_references_are_left_only_for_names_not_captured_yet() {
        let s = scope();
        let v = s
            .value_keeping(&json!(["${seq}+1", "${own}", "${own}+1"]), &|r| {
                r == "seq" || r == "own"
            })
            .unwrap();
        assert_eq!(v, json!([42, "${own}", "${own}+1"]));
    }

    #[test]
    fn count_from_template() {
        let s = scope();
        let n = s
            .count(&NumExpr::Template("${limits.max_frame_bytes}+1".into()))
            .unwrap();
        assert_eq!(n, 1025);
        assert!(s.count(&NumExpr::Template("${user.bob}".into())).is_err());
    }
}
