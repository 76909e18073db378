//! Faults that make the shell read client frames as a lenient parser would (TRANS-29 to
//! TRANS-32): each rewrites the frame's text into the one a correct decoder would accept,
//! so `decode_client` itself stays strict. Without the `faults` feature nothing is rewritten.

use std::borrow::Cow;

use serde_json::Value;

use crate::core::{Fault, Faults};

/// The text the server decodes: `text` itself unless a parsing fault is on.
pub fn client_text<'a>(text: &'a str, faults: &Faults) -> Cow<'a, str> {
    if faults.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut text = Cow::Borrowed(text);
    if faults.on(Fault::LoneSurrogateReplaced) {
        text = Cow::Owned(replace_surrogate_escapes(&text));
    }
    let reparse = [
        Fault::NullAsAbsent,
        Fault::DuplicateNameLastWins,
        Fault::IntegralFloatAccepted,
    ];
    if !reparse.iter().any(|f| faults.on(*f)) {
        return text;
    }
    // serde_json's own Value keeps the last of repeated names.
    let Ok(mut value) = serde_json::from_str::<Value>(&text) else {
        return text;
    };
    if faults.on(Fault::NullAsAbsent) {
        drop_null_members(&mut value, 0);
    }
    if faults.on(Fault::IntegralFloatAccepted) {
        integral_floats_to_integers(&mut value);
    }
    Cow::Owned(value.to_string())
}

/// Drops `null` members of the frame and of the objects in it, except inside `data` and
/// `value` (any-JSON members), as a decoder reading `null` as "absent" would.
fn drop_null_members(value: &mut Value, depth: usize) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        for (name, v) in map.iter_mut() {
            if name != "data" && name != "value" && depth < 4 {
                drop_null_members(v, depth + 1);
            }
        }
    }
}

fn integral_floats_to_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) {
                    *value = Value::from(f as u64);
                }
            }
        }
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// Every `\uD800`..`\uDFFF` escape becomes `\uFFFD`, as a lenient parser substitutes it.
fn replace_surrogate_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u") {
        out.push_str(&rest[..at]);
        let esc = &rest[at..];
        let hex = esc.get(2..6).unwrap_or("");
        let surrogate = hex.len() == 4
            && u16::from_str_radix(hex, 16).is_ok_and(|c| (0xD800..=0xDFFF).contains(&c));
        if surrogate {
            out.push_str("\\uFFFD");
            rest = &esc[6..];
        } else {
            out.push_str(&esc[..2]);
            rest = &esc[2..];
        }
    }
    out.push_str(rest);
    out
}
