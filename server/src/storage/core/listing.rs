//! The storage core's listing: keys in byte order under a prefix, grouped by a delimiter into
//! common prefixes, as the caller sees them; and list-v2's other orders (name descending, creation
//! or update time), where a folder sorts by the latest time among its objects, as Supabase's
//! `search_by_timestamp` does.

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

    /// A page in `q.order`, after `q.cursor` (a previous page's [`ListPage::last`]): entries
    /// (objects, and common prefixes when `q.delimited` by `/`) under `q.prefix`, at most `q.max`. Reads every
    /// key under the prefix to order them (as Supabase's timestamp sort does): for large folders
    /// the byte-order [`Storage::list`] is the cheap one.
    pub async fn list_sorted(
        &self,
        actor: &Actor,
        bucket: &str,
        q: &SortedList<'_>,
    ) -> Result<ListPage, StorageError> {
        let SortedList {
            prefix,
            delimited,
            order,
            cursor,
            max,
        } = *q;
        let (after_ts, after_entry) = match cursor.and_then(|c| c.split_once('\n')) {
            Some((ts, entry)) => ((!ts.is_empty()).then_some(ts), Some(entry)),
            None => (None, None),
        };
        let limit = max.clamp(1, 1000) as i64 + 1;
        let tx = self.tx(actor, true).await?;
        let rows = tx
            .client()
            .query_typed(
                &sorted_sql(order),
                &[
                    (&bucket, Type::TEXT),
                    (&prefix, Type::TEXT),
                    (&delimited, Type::BOOL),
                    (&after_ts, Type::TEXT),
                    (&after_entry, Type::TEXT),
                    (&limit, Type::INT8),
                ],
            )
            .await?;
        tx.commit().await?;
        let mut page = ListPage {
            truncated: rows.len() as i64 == limit,
            ..ListPage::default()
        };
        for row in rows.iter().take(limit as usize - 1) {
            let entry: String = row.get("entry");
            let ts: Option<String> = row.get("ts_text");
            page.last = Some(format!("{}\n{entry}", ts.unwrap_or_default()));
            if row.get::<_, bool>("folder") {
                page.prefixes.push(entry);
            } else if let Some(info) = ObjectInfo::from_row(row) {
                page.objects.push(info);
            }
        }
        Ok(page)
    }
}

/// What [`Storage::list_sorted`] lists.
#[derive(Debug, Clone, Copy)]
pub struct SortedList<'a> {
    pub prefix: &'a str,
    pub delimited: bool,
    pub order: ListOrder,
    pub cursor: Option<&'a str>,
    pub max: usize,
}

/// list-v2's `sortBy`: a column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOrder {
    pub column: SortColumn,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Name,
    CreatedAt,
    UpdatedAt,
}

/// The statement for `order`: its column and direction are fixed words from the enum, never input.
/// $1 bucket, $2 prefix, $3 group by `/`, $4/$5 the cursor's time (text) and entry, $6 the limit.
fn sorted_sql(order: ListOrder) -> String {
    let ts = match order.column {
        SortColumn::Name => "null::timestamptz",
        SortColumn::CreatedAt => "created_at",
        SortColumn::UpdatedAt => "updated_at",
    };
    let (cmp, dir) = if order.descending {
        ("<", "desc")
    } else {
        (">", "asc")
    };
    format!(
        "with o as (select {cols}, {ts} as ts, \
                position('/' in substr(name, length($2) + 1)) as slash \
              from storage.objects where bucket_id = $1 and starts_with(name, $2)), \
         e as (select case when $3 and slash > 0 then left(name, length($2) + slash) else name end \
                 as entry, bool_or($3 and slash > 0) as folder, max(ts) as ts from o group by 1) \
         select e.entry, e.folder, e.ts::text as ts_text, o.* \
           from e left join o on not e.folder and o.name = e.entry \
          where $5::text is null or (coalesce(e.ts, '-infinity'), e.entry) {cmp} \
                (coalesce($4::timestamptz, '-infinity'), $5) \
          order by coalesce(e.ts, '-infinity') {dir}, e.entry {dir} limit $6",
        cols = OBJECT_COLUMNS,
    )
}
