//! Matchers: an expected JSON tree (placeholders already substituted) compared with an
//! actual value, with captures (FIXTURES.md, "Matchers").

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Where and how an actual value differs from the expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// JSON pointer into the actual value.
    pub path: String,
    /// What was expected there.
    pub expected: String,
    /// What was found (`absent` when missing).
    pub actual: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(
            f,
            "at {path}: expected {}, got {}",
            self.expected, self.actual
        )
    }
}

/// Type matchers and their names.
const TYPE_MATCHERS: [&str; 10] = [
    "$any",
    "$string",
    "$nonempty",
    "$number",
    "$uint",
    "$int",
    "$bool",
    "$null",
    "$object",
    "$array",
];

/// Operator keys.
const OPERATORS: [&str; 17] = [
    "$capture",
    "$exact",
    "$literal",
    "$len",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$ne",
    "$any_of",
    "$all",
    "$not",
    "$unordered",
    "$contains",
    "$prefix",
    "$regex",
    "$near_now",
];

/// Matching state: captures made so far and the clock for `$near_now`.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// Captured values (committed only when a whole match succeeds).
    pub captures: BTreeMap<String, Value>,
    /// The harness clock, Unix milliseconds.
    pub now_ms: u64,
}

impl Matcher {
    /// Matches `actual` against `expected`; on success the captures are added to `self`.
    pub fn check(&mut self, expected: &Value, actual: &Value) -> Result<(), Mismatch> {
        let mut trial = self.captures.clone();
        let now = self.now_ms;
        match_at(expected, Some(actual), "", &mut trial, now)?;
        self.captures = trial;
        Ok(())
    }

    /// Like [`Matcher::check`] but never stores captures.
    pub fn test(&self, expected: &Value, actual: &Value) -> bool {
        let mut trial = self.captures.clone();
        match_at(expected, Some(actual), "", &mut trial, self.now_ms).is_ok()
    }
}

fn mismatch(path: &str, expected: impl Into<String>, actual: Option<&Value>) -> Mismatch {
    Mismatch {
        path: path.to_owned(),
        expected: expected.into(),
        actual: actual.map_or_else(|| "absent".to_owned(), short),
    }
}

/// A value rendered for a message, cut at 200 characters.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 {
        let cut: String = s.chars().take(200).collect();
        format!("{cut}…")
    } else {
        s
    }
}

type Caps = BTreeMap<String, Value>;

fn match_at(
    exp: &Value,
    act: Option<&Value>,
    path: &str,
    caps: &mut Caps,
    now: u64,
) -> Result<(), Mismatch> {
    if exp.as_str() == Some("$absent") {
        return match act {
            None => Ok(()),
            Some(_) => Err(mismatch(path, "the member to be absent", act)),
        };
    }
    let Some(a) = act else {
        return Err(mismatch(path, describe(exp), None));
    };
    match exp {
        Value::String(s) if s.starts_with('$') => match_special(s, a, path, caps),
        Value::Object(m) if m.keys().next().is_some_and(|k| k.starts_with('$')) => {
            match_operator(m, a, path, caps, now)
        }
        Value::Object(m) => {
            let Value::Object(am) = a else {
                return Err(mismatch(path, "an object", Some(a)));
            };
            // `type` first: a frame of the wrong kind is reported as such, not by a member.
            let ordered = m
                .get_key_value("type")
                .into_iter()
                .chain(m.iter().filter(|(k, _)| *k != "type"));
            for (k, e) in ordered {
                match_at(e, am.get(k), &format!("{path}/{}", escape(k)), caps, now)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let Value::Array(actual) = a else {
                return Err(mismatch(path, "an array", Some(a)));
            };
            if items.len() != actual.len() {
                return Err(mismatch(
                    path,
                    format!("an array of {} elements", items.len()),
                    Some(a),
                ));
            }
            for (i, (e, x)) in items.iter().zip(actual).enumerate() {
                match_at(e, Some(x), &format!("{path}/{i}"), caps, now)?;
            }
            Ok(())
        }
        Value::Number(_) => {
            if numbers_equal(exp, a) {
                Ok(())
            } else {
                Err(mismatch(path, exp.to_string(), Some(a)))
            }
        }
        _ if exp == a => Ok(()),
        _ => Err(mismatch(path, exp.to_string(), Some(a))),
    }
}

fn escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

fn describe(exp: &Value) -> String {
    match exp {
        Value::String(s) if s.starts_with('$') => s.clone(),
        other => short(other),
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn match_special(s: &str, a: &Value, path: &str, caps: &mut Caps) -> Result<(), Mismatch> {
    if let Some(name) = s.strip_prefix("$capture:") {
        caps.insert(name.to_owned(), a.clone());
        return Ok(());
    }
    let ok = match s {
        "$any" => true,
        "$string" => a.is_string(),
        "$nonempty" => a.as_str().is_some_and(|s| !s.is_empty()),
        "$number" => a.is_number(),
        "$uint" => a.is_u64(),
        "$int" => a.is_i64() || a.is_u64(),
        "$bool" => a.is_boolean(),
        "$null" => a.is_null(),
        "$object" => a.is_object(),
        "$array" => a.is_array(),
        _ => {
            return Err(mismatch(
                path,
                format!("a known matcher (not {s:?})"),
                Some(a),
            ))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(mismatch(path, s, Some(a)))
    }
}

fn match_operator(
    m: &Map<String, Value>,
    a: &Value,
    path: &str,
    caps: &mut Caps,
    now: u64,
) -> Result<(), Mismatch> {
    let (op, arg) = m
        .iter()
        .next()
        .map(|(k, v)| (k.as_str(), v))
        .unwrap_or(("", &Value::Null));
    let fail = |what: String| Err(mismatch(path, what, Some(a)));
    match op {
        "$capture" => {
            if let Some(inner) = m.get("$match") {
                match_at(inner, Some(a), path, caps, now)?;
            }
            caps.insert(arg.as_str().unwrap_or_default().to_owned(), a.clone());
            Ok(())
        }
        "$exact" | "$literal" => {
            if deep_equal(arg, a) {
                Ok(())
            } else {
                fail(format!("exactly {}", short(arg)))
            }
        }
        "$len" => {
            let len = match a {
                Value::Array(x) => x.len(),
                Value::Object(x) => x.len(),
                Value::String(x) => x.chars().count(),
                _ => return fail("something with a length".into()),
            };
            match_at(
                arg,
                Some(&Value::from(len)),
                &format!("{path}(length)"),
                caps,
                now,
            )
        }
        "$gt" | "$gte" | "$lt" | "$lte" => compare(op, arg, a, path),
        "$ne" => {
            if deep_equal(arg, a) {
                fail(format!("anything but {}", short(arg)))
            } else {
                Ok(())
            }
        }
        "$any_of" => {
            let options = arg.as_array().map(Vec::as_slice).unwrap_or_default();
            for o in options {
                let mut trial = caps.clone();
                if match_at(o, Some(a), path, &mut trial, now).is_ok() {
                    *caps = trial;
                    return Ok(());
                }
            }
            fail(format!("one of {}", short(arg)))
        }
        "$all" => {
            for o in arg.as_array().map(Vec::as_slice).unwrap_or_default() {
                match_at(o, Some(a), path, caps, now)?;
            }
            Ok(())
        }
        "$not" => {
            let mut trial = caps.clone();
            if match_at(arg, Some(a), path, &mut trial, now).is_ok() {
                fail(format!("not {}", short(arg)))
            } else {
                Ok(())
            }
        }
        "$unordered" | "$contains" => {
            let Value::Array(actual) = a else {
                return fail("an array".into());
            };
            let wanted = arg.as_array().map(Vec::as_slice).unwrap_or_default();
            if op == "$unordered" && wanted.len() != actual.len() {
                return fail(format!(
                    "an array of {} elements in any order",
                    wanted.len()
                ));
            }
            let mut used = vec![false; actual.len()];
            if assign(wanted, actual, &mut used, caps, now) {
                Ok(())
            } else {
                fail(format!("{op} {}", short(arg)))
            }
        }
        "$prefix" => {
            let p = arg.as_str().unwrap_or_default();
            if a.as_str().is_some_and(|s| s.starts_with(p)) {
                Ok(())
            } else {
                fail(format!("a string starting with {p:?}"))
            }
        }
        "$regex" => {
            let pattern = arg.as_str().unwrap_or_default();
            let re = regex::Regex::new(pattern)
                .map_err(|e| mismatch(path, format!("a valid regex ({e})"), Some(a)))?;
            if a.as_str().is_some_and(|s| re.is_match(s)) {
                Ok(())
            } else {
                fail(format!("a string matching /{pattern}/"))
            }
        }
        "$near_now" => {
            let tolerance = arg.as_f64().unwrap_or(0.0);
            match a.as_f64() {
                Some(x) if (x - now as f64).abs() <= tolerance => Ok(()),
                _ => fail(format!("a time within {tolerance} ms of now ({now})")),
            }
        }
        other => fail(format!("a known operator (not {other:?})")),
    }
}

fn compare(op: &str, bound: &Value, a: &Value, path: &str) -> Result<(), Mismatch> {
    let (Some(x), Some(b)) = (a.as_f64(), bound.as_f64()) else {
        return Err(mismatch(path, format!("a number {op} {bound}"), Some(a)));
    };
    let ok = match op {
        "$gt" => x > b,
        "$gte" => x >= b,
        "$lt" => x < b,
        _ => x <= b,
    };
    if ok {
        Ok(())
    } else {
        let sym = match op {
            "$gt" => ">",
            "$gte" => ">=",
            "$lt" => "<",
            _ => "<=",
        };
        Err(mismatch(path, format!("a number {sym} {bound}"), Some(a)))
    }
}

/// Backtracking one-to-one assignment of matchers to distinct elements.
fn assign(
    wanted: &[Value],
    actual: &[Value],
    used: &mut [bool],
    caps: &mut Caps,
    now: u64,
) -> bool {
    let Some((first, rest)) = wanted.split_first() else {
        return true;
    };
    for i in 0..actual.len() {
        if used[i] {
            continue;
        }
        let mut trial = caps.clone();
        if match_at(first, Some(&actual[i]), "", &mut trial, now).is_ok() {
            used[i] = true;
            if assign(rest, actual, used, &mut trial, now) {
                *caps = trial;
                return true;
            }
            used[i] = false;
        }
    }
    false
}

/// Deep equality with numeric comparison of numbers.
pub fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => numbers_equal(a, b),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Names captured anywhere in a matcher tree.
pub fn capture_names(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s
            .strip_prefix("$capture:")
            .map(str::to_owned)
            .into_iter()
            .collect(),
        Value::Array(a) => a.iter().flat_map(capture_names).collect(),
        Value::Object(m) => {
            let own = m.get("$capture").and_then(Value::as_str).map(str::to_owned);
            own.into_iter()
                .chain(m.values().flat_map(capture_names))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Unknown `$` matchers and operators in an expected tree (a fixture bug).
pub fn lint(exp: &Value) -> Vec<String> {
    let mut out = Vec::new();
    lint_into(exp, &mut out);
    out
}

fn lint_into(exp: &Value, out: &mut Vec<String>) {
    match exp {
        Value::String(s) => {
            let known = s.starts_with("${")
                || s.starts_with("$capture:")
                || s == "$absent"
                || TYPE_MATCHERS.contains(&s.as_str());
            if s.starts_with('$') && !known {
                out.push(format!("unknown matcher {s:?}"));
            }
        }
        Value::Object(m) => {
            if let Some(op) = m.keys().next().filter(|k| k.starts_with('$')) {
                // A generator is replaced by its value before matching (template.rs).
                if op == "$pad" {
                    return;
                }
                if !OPERATORS.contains(&op.as_str()) {
                    out.push(format!("unknown operator {op:?}"));
                    return;
                }
                if op == "$exact" || op == "$literal" {
                    return;
                }
                let extra: Vec<_> = m
                    .keys()
                    .skip(1)
                    .filter(|k| !(op == "$capture" && *k == "$match"))
                    .collect();
                if !extra.is_empty() {
                    out.push(format!(
                        "operator {op} takes no other keys (found {extra:?})"
                    ));
                }
            }
            m.values().for_each(|v| lint_into(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| lint_into(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(exp: Value, act: Value) -> Result<Matcher, Mismatch> {
        let mut m = Matcher {
            now_ms: 1_000_000,
            ..Default::default()
        };
        m.check(&exp, &act).map(|_| m)
    }

    #[test]
    fn objects_match_partially() {
        assert!(check(json!({"type": "pong"}), json!({"type": "pong", "ts": 1})).is_ok());
    }

    #[test]
    fn wrong_member_names_its_path() {
        let e = check(json!({"a": {"b": 2}}), json!({"a": {"b": 3}})).unwrap_err();
        assert_eq!(e.path, "/a/b");
        assert_eq!(e.actual, "3");
    }

    #[test]
    fn wrong_type_is_reported_before_members() {
        let e = check(
            json!({"type": "error", "code": "x"}),
            json!({"type": "pong"}),
        )
        .unwrap_err();
        assert_eq!(e.path, "/type");
    }

    #[test]
    fn absent_requires_missing_member() {
        assert!(check(json!({"id": "$absent"}), json!({})).is_ok());
        assert!(check(json!({"id": "$absent"}), json!({"id": null})).is_err());
    }

    #[test]
    fn numbers_compare_numerically() {
        assert!(check(json!(1), json!(1.0)).is_ok());
        assert!(check(json!(1), json!("1")).is_err());
    }

    #[test]
    fn capture_is_committed_only_on_full_match() {
        let mut m = Matcher::default();
        let r = m.check(
            &json!({"a": "$capture:x", "b": 1}),
            &json!({"a": 5, "b": 2}),
        );
        assert!(r.is_err());
        assert!(!m.captures.contains_key("x"));
        m.check(&json!({"a": "$capture:x"}), &json!({"a": 5}))
            .unwrap();
        assert_eq!(m.captures["x"], json!(5));
    }

    #[test]
    fn exact_forbids_extra_keys() {
        assert!(check(
            json!({"d": {"$exact": {"a": 1}}}),
            json!({"d": {"a": 1, "b": 2}})
        )
        .is_err());
        assert!(check(json!({"d": {"$exact": {"a": 1}}}), json!({"d": {"a": 1.0}})).is_ok());
    }

    #[test]
    fn unordered_assigns_one_to_one() {
        let exp = json!({"$unordered": [{"u": "a"}, {"u": "$string"}]});
        assert!(check(exp.clone(), json!([{"u": "b"}, {"u": "a"}])).is_ok());
        assert!(check(exp, json!([{"u": "a"}])).is_err());
    }

    #[test]
    fn contains_allows_extras() {
        assert!(check(json!({"$contains": [2]}), json!([1, 2, 3])).is_ok());
        assert!(check(json!({"$contains": [4]}), json!([1, 2, 3])).is_err());
    }

    #[test]
    fn operators_compare_and_combine() {
        assert!(check(json!({"$gt": 3}), json!(4)).is_ok());
        assert!(check(json!({"$lte": 3}), json!(4)).is_err());
        assert!(check(json!({"$len": {"$gte": 2}}), json!([1, 2])).is_ok());
        assert!(check(json!({"$any_of": ["$string", 3]}), json!(3)).is_ok());
        assert!(check(json!({"$all": ["$uint", {"$ne": 3}]}), json!(3)).is_err());
        assert!(check(json!({"$not": "$string"}), json!(3)).is_ok());
        assert!(check(json!({"$regex": "^e-[0-9]+$"}), json!("e-12")).is_ok());
        assert!(check(json!({"$prefix": "c-"}), json!("d-1")).is_err());
        assert!(check(json!({"$near_now": 500}), json!(1_000_400)).is_ok());
        assert!(check(json!({"$near_now": 500}), json!(2_000_000)).is_err());
    }

    #[test]
    fn capture_with_constraint() {
        let m = check(json!({"$capture": "s", "$match": "$uint"}), json!(9)).unwrap();
        assert_eq!(m.captures["s"], json!(9));
        assert!(check(json!({"$capture": "s", "$match": "$uint"}), json!("9")).is_err());
    }

    #[test]
    fn lint_finds_unknown_matchers() {
        let found = lint(&json!({"a": "$uintt", "b": {"$times": [1, 2]}, "c": "${x}",
            "d": "$capture:y", "e": {"$pad": 3, "prefix": "c-"}}));
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
