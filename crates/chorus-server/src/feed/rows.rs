//! Rows of the replication stream as [`ExternalChange`]s (changes.md "Database feeds"
//! table): the key column as record id, the tenant, the whole row as `data`.

use chorus_protocol::Operation;
use serde_json::Value;

use crate::core::{is_record_id, is_resource_name, ExternalChange};

use super::pgoutput::{
    column_text, row_object, DecodeError, Message, OldKind, Relation, Relations,
};
use super::FeedSettings;

/// Warns about a relation whose changes cannot carry whole rows.
pub fn check_identity(relation: &Relation) {
    if relation.replica_identity != b'f' {
        tracing::warn!(
            table = %relation.name,
            "postgres feed: REPLICA IDENTITY is not FULL; deletes carry only the key columns \
             and unchanged TOASTed columns are left out of updates"
        );
    }
}

/// The change of one row message, or `None` (logged) when it cannot be announced.
pub fn to_change(
    relations: &Relations,
    message: Message,
    s: &FeedSettings,
) -> Result<Option<ExternalChange>, DecodeError> {
    let (operation, rel, row, old) = match message {
        Message::Insert { rel, new } => (Operation::Create, rel, new, None),
        Message::Update { rel, old, new } => (Operation::Update, rel, new, old),
        Message::Delete { rel, old } => (Operation::Delete, rel, old.1.clone(), Some(old)),
        _ => return Ok(None),
    };
    let relation = relations.get(rel)?;
    let keys_only = operation == Operation::Delete && matches!(old, Some((OldKind::Key, _)));
    let fill = match &old {
        Some((OldKind::Full, old)) if operation == Operation::Update => Some(old.as_slice()),
        _ => None,
    };
    let (mut data, missing) = row_object(relation, &row, fill, keys_only);
    if missing > 0 {
        tracing::warn!(table = %relation.name, missing, "postgres feed: unchanged TOASTed columns left out");
    }
    let Some(record_id) = column_text(relation, &row, &s.key_column).map(str::to_owned) else {
        tracing::warn!(table = %relation.name, column = %s.key_column, "postgres feed: change without a key value skipped");
        return Ok(None);
    };
    if !is_resource_name(&relation.name) || !is_record_id(&record_id) {
        tracing::warn!(table = %relation.name, %record_id, "postgres feed: table or key breaks the naming rules; change skipped");
        return Ok(None);
    }
    let tenant = match &s.tenant_column {
        Some(column) => column_text(relation, &row, column).unwrap_or("").to_owned(),
        None => s.tenant.clone(),
    };
    data.insert("id".into(), Value::String(record_id.clone()));
    Ok(Some(ExternalChange {
        tenant,
        operation,
        resource: relation.name.clone(),
        record_id,
        data: Value::Object(data),
    }))
}
