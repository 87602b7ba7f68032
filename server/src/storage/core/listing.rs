//! The storage core's listing: keys in byte order under a prefix, grouped by a delimiter into
//! common prefixes, as the caller sees them.

use super::*;

impl Storage {
    /// Lists keys in byte order after `after`, under `prefix`, grouping keys that contain `delimiter`
    /// past the prefix into common prefixes; at most `max` entries (keys + prefixes).
    pub async fn list(
        &self,
        actor: &Actor,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<ListPage, StorageError> {
        let mut page = ListPage::default();
        if max == 0 {
            return Ok(page);
        }
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut after = after.unwrap_or("").to_string();
        if let Some(d) = delimiter
            && after.ends_with(d)
            && after.starts_with(prefix)
        {
            after.push(char::MAX);
        }
        let tx = self.tx(actor, true).await?;
        let batch: i64 = (max as i64 + 1).clamp(2, 1000);
        'outer: loop {
            let rows = tx
                .client()
                .query_typed(
                    LIST_SQL,
                    &[
                        (&bucket, Type::TEXT),
                        (&prefix, Type::TEXT),
                        (&after, Type::TEXT),
                        (&batch, Type::INT8),
                    ],
                )
                .await?;
            let done = (rows.len() as i64) < batch;
            for row in &rows {
                let name: String = row.get("name");
                after = name.clone();
                if page.objects.len() + page.prefixes.len() >= max {
                    page.truncated = true;
                    break 'outer;
                }
                if let Some(d) = delimiter
                    && let Some(pos) = name[prefix.len()..].find(d)
                {
                    let cp = name[..prefix.len() + pos + d.len()].to_string();
                    after = format!("{cp}{}", char::MAX);
                    page.last = Some(cp.clone());
                    page.prefixes.push(cp);
                    continue 'outer;
                }
                if let Some(info) = ObjectInfo::from_row(row) {
                    page.last = Some(name);
                    page.objects.push(info);
                }
            }
            if done {
                break;
            }
        }
        tx.commit().await?;
        Ok(page)
    }
}
