//! Records of the HTTP resource API (http.md, changes.md).

use rusqlite::{params, OptionalExtension};

use super::{int, parse_json, Store, StoreError};

impl Store {
    /// One record's JSON, if it exists.
    pub fn resource_get(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT data FROM resources WHERE tenant = ?1 AND resource = ?2 AND id = ?3",
            )?
            .query_row(params![tenant, resource, id], |r| r.get(0))
            .optional()?;
        text.map(|t| parse_json(&t, "resources")).transpose()
    }

    /// Records in creation order after record `after` (from the start when `None`); at most
    /// `limit`, and whether more follow.
    pub fn resource_list(
        &self,
        tenant: &str,
        resource: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<(String, serde_json::Value)>, bool), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, data FROM resources WHERE tenant = ?1 AND resource = ?2
             AND rowid > COALESCE((SELECT rowid FROM resources
                 WHERE tenant = ?1 AND resource = ?2 AND id = ?3), CASE WHEN ?3 IS NULL THEN 0 END)
             ORDER BY rowid LIMIT ?4",
        )?;
        let mut rows = stmt.query(params![
            tenant,
            resource,
            after,
            int(limit.saturating_add(1))
        ])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let data: String = r.get(1)?;
            out.push((r.get(0)?, parse_json(&data, "resources")?));
        }
        let more = out.len() as u64 > limit;
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((out, more))
    }

    /// Inserts a new record.
    pub fn resource_insert(
        &mut self,
        tenant: &str,
        resource: &str,
        id: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO resources (tenant, resource, id, data) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![tenant, resource, id, data.to_string()])?;
        Ok(())
    }

    /// Replaces an existing record's JSON, keeping its place in creation order.
    pub fn resource_update(
        &mut self,
        tenant: &str,
        resource: &str,
        id: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE resources SET data = ?4 WHERE tenant = ?1 AND resource = ?2 AND id = ?3",
            )?
            .execute(params![tenant, resource, id, data.to_string()])?;
        Ok(())
    }

    /// Removes a record.
    pub fn resource_delete(
        &mut self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "DELETE FROM resources WHERE tenant = ?1 AND resource = ?2 AND id = ?3",
            )?
            .execute(params![tenant, resource, id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_pages_in_creation_order() {
        let mut s = Store::memory().unwrap();
        for id in ["c", "a", "b"] {
            s.resource_insert("", "post", id, &json!({"id": id}))
                .unwrap();
        }
        s.resource_update("", "post", "c", &json!({"id": "c", "x": 1}))
            .unwrap();
        let (page, more) = s.resource_list("", "post", None, 2).unwrap();
        let ids: Vec<_> = page.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!((ids, more), (vec!["c", "a"], true));
        let (page, more) = s.resource_list("", "post", Some("a"), 2).unwrap();
        assert_eq!((page.len(), page[0].0.as_str(), more), (1, "b", false));
    }

    #[test]
    fn records_are_per_tenant() {
        let mut s = Store::memory().unwrap();
        s.resource_insert("a", "post", "1", &json!({"id": "1"}))
            .unwrap();
        assert!(s.resource_get("b", "post", "1").unwrap().is_none());
        assert!(s.resource_get("a", "post", "1").unwrap().is_some());
        s.resource_delete("a", "post", "1").unwrap();
        assert!(s.resource_get("a", "post", "1").unwrap().is_none());
    }
}
