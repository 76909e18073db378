//! Decoding of PostgreSQL's `pgoutput` logical replication messages (protocol version 1:
//! whole transactions after their commit), the part of the protocol no maintained crate
//! decodes: `pgwire-replication` hands over the transaction boundaries and the raw bytes of
//! every other message. Reference: PostgreSQL, "Logical Replication Message Formats".

use std::collections::HashMap;

use serde_json::{Map, Value};
use thiserror::Error;

/// A message that does not follow the format.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    /// The message ended early.
    #[error("pgoutput: truncated {0}")]
    Truncated(&'static str),
    /// A tuple's kind byte, or a message tag, is unknown.
    #[error("pgoutput: unexpected byte {byte:#04x} in {what}")]
    Unexpected {
        /// Where.
        what: &'static str,
        /// The byte.
        byte: u8,
    },
    /// A change names a relation no `Relation` message described.
    #[error("pgoutput: change of unknown relation {0}")]
    UnknownRelation(u32),
    /// A string is not UTF-8 (the feed asks for UTF-8 client encoding).
    #[error("pgoutput: text is not UTF-8")]
    NotUtf8,
}

/// A column of a relation.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Part of the replica identity key.
    pub key: bool,
    /// Type OID (decides the JSON form of its values).
    pub type_oid: u32,
}

/// A table as described by a `Relation` message (sent before its first change in a
/// session and again after every schema change).
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// Schema name.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// `REPLICA IDENTITY`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Columns in table order.
    pub columns: Vec<Column>,
}

/// One column value of a row image.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// SQL `NULL`.
    Null,
    /// A TOASTed value that did not change (not sent).
    UnchangedToast,
    /// The text form.
    Text(String),
}

/// Which old image an update or delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// `K`: the key columns only (others are `NULL`).
    Key,
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full,
}

/// A decoded message that matters to the feed.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A relation description (cached by [`Relations`]).
    Relation(u32, Relation),
    /// `INSERT`.
    Insert {
        /// Relation OID.
        rel: u32,
        /// The new row.
        new: Vec<Datum>,
    },
    /// `UPDATE`.
    Update {
        /// Relation OID.
        rel: u32,
        /// The old row, when the replica identity sends one.
        old: Option<(OldKind, Vec<Datum>)>,
        /// The new row.
        new: Vec<Datum>,
    },
    /// `DELETE`.
    Delete {
        /// Relation OID.
        rel: u32,
        /// The old row.
        old: (OldKind, Vec<Datum>),
    },
    /// `TRUNCATE` of these relations.
    Truncate(Vec<u32>),
    /// `Type`, `Origin` and anything else the feed does not use.
    Other,
}

/// Decodes one message.
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader(data);
    let tag = r.u8("tag")?;
    Ok(match tag {
        b'R' => {
            let rel = r.u32("relation id")?;
            let namespace = r.cstr()?;
            let name = r.cstr()?;
            let replica_identity = r.u8("replica identity")?;
            let n = r.u16("column count")?;
            let mut columns = Vec::with_capacity(n.into());
            for _ in 0..n {
                let flags = r.u8("column flags")?;
                let name = r.cstr()?;
                let type_oid = r.u32("type oid")?;
                let _typmod = r.u32("type modifier")?;
                columns.push(Column {
                    name,
                    key: flags & 1 == 1,
                    type_oid,
                });
            }
            let relation = Relation {
                namespace,
                name,
                replica_identity,
                columns,
            };
            Message::Relation(rel, relation)
        }
        b'I' => {
            let rel = r.u32("relation id")?;
            r.expect(b'N', "insert")?;
            Message::Insert {
                rel,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let rel = r.u32("relation id")?;
            let mut old = None;
            let mut kind = r.u8("update")?;
            if kind == b'K' || kind == b'O' {
                old = Some((old_kind(kind), r.tuple()?));
                kind = r.u8("update")?;
            }
            if kind != b'N' {
                return Err(DecodeError::Unexpected {
                    what: "update",
                    byte: kind,
                });
            }
            Message::Update {
                rel,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let rel = r.u32("relation id")?;
            let kind = r.u8("delete")?;
            if kind != b'K' && kind != b'O' {
                return Err(DecodeError::Unexpected {
                    what: "delete",
                    byte: kind,
                });
            }
            Message::Delete {
                rel,
                old: (old_kind(kind), r.tuple()?),
            }
        }
        b'T' => {
            let n = r.u32("relation count")?;
            let _options = r.u8("truncate options")?;
            let rels = (0..n)
                .map(|_| r.u32("relation id"))
                .collect::<Result<_, _>>()?;
            Message::Truncate(rels)
        }
        _ => Message::Other,
    })
}

fn old_kind(byte: u8) -> OldKind {
    if byte == b'O' {
        OldKind::Full
    } else {
        OldKind::Key
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), DecodeError> {
        match self.u8(what)? {
            b if b == byte => Ok(()),
            b => Err(DecodeError::Unexpected { what, byte: b }),
        }
    }

    fn cstr(&mut self) -> Result<String, DecodeError> {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated("string"))?;
        let text = std::str::from_utf8(&self.0[..end]).map_err(|_| DecodeError::NotUtf8)?;
        self.0 = &self.0[end + 1..];
        Ok(text.to_owned())
    }

    fn tuple(&mut self) -> Result<Vec<Datum>, DecodeError> {
        let n = self.u16("tuple column count")?;
        (0..n)
            .map(|_| match self.u8("tuple column kind")? {
                b'n' => Ok(Datum::Null),
                b'u' => Ok(Datum::UnchangedToast),
                b't' => {
                    let len = self.u32("value length")? as usize;
                    let bytes = self.take(len, "value")?;
                    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
                    Ok(Datum::Text(text.to_owned()))
                }
                byte => Err(DecodeError::Unexpected {
                    what: "tuple column kind",
                    byte,
                }),
            })
            .collect()
    }
}

/// The relations described so far in a replication session, by OID.
#[derive(Debug, Default)]
pub struct Relations(HashMap<u32, Relation>);

impl Relations {
    /// Remembers (or replaces, after a schema change) a relation.
    pub fn describe(&mut self, oid: u32, relation: Relation) {
        self.0.insert(oid, relation);
    }

    /// The relation of a change.
    pub fn get(&self, oid: u32) -> Result<&Relation, DecodeError> {
        self.0.get(&oid).ok_or(DecodeError::UnknownRelation(oid))
    }
}

// Type OIDs of pg_type whose text form maps onto a JSON type.
const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const JSON: u32 = 114;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const JSONB: u32 = 3802;

/// The JSON form of a column value (changes.md "Database feeds" table): numbers and
/// booleans as JSON, `json`/`jsonb` as the value itself, everything else (`numeric`
/// included, to stay exact) as its PostgreSQL text.
pub fn json_value(type_oid: u32, text: &str) -> Value {
    let parsed = match type_oid {
        BOOL => Some(Value::Bool(text == "t")),
        INT2 | INT4 | INT8 | OID => text.parse::<i64>().ok().map(Value::from),
        FLOAT4 | FLOAT8 => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        JSON | JSONB => serde_json::from_str(text).ok(),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::String(text.to_owned()))
}

/// A row image as a JSON object. `fill` supplies the values of unchanged TOASTed columns
/// (the old image of a `REPLICA IDENTITY FULL` update); a column left unchanged without one
/// is left out. `keys_only`: a `K` image, of which only the key columns are real.
pub fn row_object(
    relation: &Relation,
    row: &[Datum],
    fill: Option<&[Datum]>,
    keys_only: bool,
) -> (Map<String, Value>, usize) {
    let mut map = Map::new();
    let mut missing = 0;
    for (i, (column, datum)) in relation.columns.iter().zip(row).enumerate() {
        if keys_only && !column.key {
            continue;
        }
        let datum = match datum {
            Datum::UnchangedToast => match fill.and_then(|old| old.get(i)) {
                Some(old @ (Datum::Text(_) | Datum::Null)) => old,
                _ => {
                    missing += 1;
                    continue;
                }
            },
            datum => datum,
        };
        let value = match datum {
            Datum::Text(text) => json_value(column.type_oid, text),
            _ => Value::Null,
        };
        map.insert(column.name.clone(), value);
    }
    (map, missing)
}

/// The text of column `name` in a row, `None` when absent or `NULL`.
pub fn column_text<'a>(relation: &Relation, row: &'a [Datum], name: &str) -> Option<&'a str> {
    let i = relation.columns.iter().position(|c| c.name == name)?;
    match row.get(i)? {
        Datum::Text(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend(s.as_bytes());
        out.push(0);
    }

    fn relation_message() -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend(16384u32.to_be_bytes());
        cstr(&mut m, "public");
        cstr(&mut m, "post");
        m.push(b'f');
        m.extend(3u16.to_be_bytes());
        for (flags, name, oid) in [(1u8, "id", INT8), (0, "body", 25), (0, "meta", JSONB)] {
            m.push(flags);
            cstr(&mut m, name);
            m.extend(oid.to_be_bytes());
            m.extend((-1i32).to_be_bytes());
        }
        m
    }

    fn tuple(out: &mut Vec<u8>, values: &[Option<&str>], toast: usize) {
        out.extend((values.len() as u16).to_be_bytes());
        for (i, v) in values.iter().enumerate() {
            match v {
                _ if i == toast => out.push(b'u'),
                None => out.push(b'n'),
                Some(text) => {
                    out.push(b't');
                    out.extend((text.len() as u32).to_be_bytes());
                    out.extend(text.as_bytes());
                }
            }
        }
    }

    #[test]
    fn a_relation_is_decoded_with_its_key_and_types() {
        let Message::Relation(oid, rel) = decode(&relation_message()).unwrap() else {
            panic!("relation expected");
        };
        assert_eq!(
            (oid, rel.name.as_str(), rel.replica_identity),
            (16384, "post", b'f')
        );
        let cols: Vec<_> = rel
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.key))
            .collect();
        assert_eq!(cols, [("id", true), ("body", false), ("meta", false)]);
    }

    #[test]
    fn an_update_fills_unchanged_toast_from_the_old_row() {
        let Message::Relation(_, rel) = decode(&relation_message()).unwrap() else {
            panic!("relation expected");
        };
        let mut m = vec![b'U'];
        m.extend(16384u32.to_be_bytes());
        m.push(b'O');
        tuple(
            &mut m,
            &[Some("7"), Some("long text"), Some(r#"{"a":1}"#)],
            usize::MAX,
        );
        m.push(b'N');
        tuple(&mut m, &[Some("7"), None, None], 1);
        let Message::Update { old, new, .. } = decode(&m).unwrap() else {
            panic!("update expected");
        };
        let (kind, old) = old.unwrap();
        assert_eq!(kind, OldKind::Full);
        let (row, missing) = row_object(&rel, &new, Some(&old), false);
        assert_eq!(
            Value::Object(row),
            json!({"id": 7, "body": "long text", "meta": null})
        );
        assert_eq!(missing, 0);
        let (row, missing) = row_object(&rel, &new, None, false);
        assert_eq!(
            (Value::Object(row), missing),
            (json!({"id": 7, "meta": null}), 1)
        );
    }

    #[test]
    fn a_key_only_delete_keeps_only_the_key() {
        let Message::Relation(_, rel) = decode(&relation_message()).unwrap() else {
            panic!("relation expected");
        };
        let mut m = vec![b'D'];
        m.extend(16384u32.to_be_bytes());
        m.push(b'K');
        tuple(&mut m, &[Some("7"), None, None], usize::MAX);
        let Message::Delete {
            old: (kind, old), ..
        } = decode(&m).unwrap()
        else {
            panic!("delete expected");
        };
        let (row, _) = row_object(&rel, &old, None, kind == OldKind::Key);
        assert_eq!(Value::Object(row), json!({"id": 7}));
        assert_eq!(column_text(&rel, &old, "id"), Some("7"));
    }

    #[test]
    fn values_map_onto_json_types() {
        assert_eq!(json_value(BOOL, "t"), json!(true));
        assert_eq!(
            json_value(INT8, "9007199254740993"),
            json!(9007199254740993i64)
        );
        assert_eq!(json_value(FLOAT8, "1.5"), json!(1.5));
        assert_eq!(json_value(FLOAT8, "NaN"), json!("NaN"));
        assert_eq!(
            json_value(1700, "0.10"),
            json!("0.10"),
            "numeric stays exact"
        );
        assert_eq!(json_value(JSONB, r#"{"a": [1]}"#), json!({"a": [1]}));
        assert_eq!(json_value(25, "x"), json!("x"));
    }

    #[test]
    fn truncated_and_malformed_messages_are_errors() {
        let m = relation_message();
        assert!(matches!(decode(&m[..10]), Err(DecodeError::Truncated(_))));
        let mut bad = vec![b'I'];
        bad.extend(1u32.to_be_bytes());
        bad.push(b'X');
        assert!(matches!(decode(&bad), Err(DecodeError::Unexpected { .. })));
        assert_eq!(decode(b"Yanything").unwrap(), Message::Other);
    }
}
