//! A channel's shared state with the length of its compact JSON kept up to date, so that
//! the size check of STATE-34 costs the size of the write, not of the whole state.

use chorus_protocol::StateData;

use crate::core::engine::StateWrite;

#[derive(Debug, Default)]
pub(super) struct StateDoc {
    pub data: StateData,
    pub version: u64,
    /// Summed lengths of the `"key":value` entries.
    pub entries_len: usize,
}

impl StateDoc {
    /// Inserts a loaded entry.
    pub fn load(&mut self, key: String, value: serde_json::Value) {
        self.entries_len += entry_len(&key, &value);
        self.data.insert(key, value);
    }

    /// Length of the compact JSON the state would have after `write`, without applying it.
    pub fn len_after(&self, write: &StateWrite) -> usize {
        let (count, len) = self.measure(write);
        doc_len(count, len)
    }

    /// Applies `write` (STATE-5 to STATE-7).
    pub fn apply(&mut self, write: &StateWrite) {
        self.entries_len = self.measure(write).1;
        match write {
            StateWrite::Update { key, value } => {
                self.data.insert(key.clone(), value.clone());
            }
            StateWrite::Merge { data } => {
                for (k, v) in data {
                    self.data.insert(k.clone(), v.clone());
                }
            }
            StateWrite::Delete { key } => {
                self.data.remove(key);
            }
        }
    }

    /// Key count and summed entry lengths after `write`.
    fn measure(&self, write: &StateWrite) -> (usize, usize) {
        let mut count = self.data.len();
        let mut len = self.entries_len;
        let mut set = |k: &str, v: Option<&serde_json::Value>| {
            if let Some(old) = self.data.get(k) {
                len -= entry_len(k, old);
                count -= 1;
            }
            if let Some(v) = v {
                len += entry_len(k, v);
                count += 1;
            }
        };
        match write {
            StateWrite::Update { key, value } => set(key, Some(value)),
            StateWrite::Merge { data } => data.iter().for_each(|(k, v)| set(k, Some(v))),
            StateWrite::Delete { key } => set(key, None),
        }
        (count, len)
    }
}

/// Length of `"key":value` in compact JSON.
fn entry_len(key: &str, value: &serde_json::Value) -> usize {
    json_len(&serde_json::Value::String(key.to_owned())) + 1 + json_len(value)
}

/// Length of `{entries}` with `count` entries whose lengths sum to `entries_len`.
fn doc_len(count: usize, entries_len: usize) -> usize {
    2 + entries_len + count.saturating_sub(1)
}

fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn measured_length_matches_serialization() {
        let mut doc = StateDoc::default();
        let writes = [
            StateWrite::Update {
                key: "a\"b".into(),
                value: json!({"x": [1, 2, "é"]}),
            },
            StateWrite::Merge {
                data: json!({"c": null, "d": 1.5}).as_object().cloned().unwrap(),
            },
            StateWrite::Delete { key: "c".into() },
        ];
        for w in &writes {
            let predicted = doc.len_after(w);
            doc.apply(w);
            let text = serde_json::to_string(&doc.data).unwrap();
            assert_eq!(predicted, text.len(), "{text}");
        }
    }
}
