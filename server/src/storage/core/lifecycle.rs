//! The storage core's lifecycle rules (S3's bucket lifecycle configuration): the rules as doska
//! keeps them (validated by the S3 door), which objects a rule selects (prefix, tags, size), when
//! it expires them, and the pass that applies every bucket's rules — expiring current versions
//! (a delete marker in a versioned bucket), noncurrent versions and expired delete markers, and
//! aborting incomplete multipart uploads. The pass acts as service_role: lifecycle rules are the
//! operator's, set on the bucket, as S3's are the bucket owner's. A "day" is configurable
//! (`--storage-lifecycle-day`) so tests need not wait days.

use std::time::Duration;

use super::*;

/// A rule's object filter.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Filter {
    pub prefix: Option<String>,
    pub tags: Vec<(String, String)>,
    /// Given as S3's `And` (GET answers the way PUT said).
    pub and: bool,
    pub size_greater_than: Option<i64>,
    pub size_less_than: Option<i64>,
}

/// One lifecycle rule.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    /// The rule-level `Prefix` (S3's older form), kept apart from `filter` for the same reason.
    pub prefix: Option<String>,
    pub filter: Option<Filter>,
    pub expiration_days: Option<i32>,
    pub expiration_date: Option<DateTime<Utc>>,
    pub expired_object_delete_marker: Option<bool>,
    pub noncurrent_days: Option<i32>,
    pub newer_noncurrent_versions: Option<i32>,
    pub abort_incomplete_days: Option<i32>,
}

impl Rule {
    /// The key prefix the rule selects ("" for all).
    pub fn key_prefix(&self) -> &str {
        let f = self.filter.as_ref().and_then(|f| f.prefix.as_deref());
        self.prefix.as_deref().or(f).unwrap_or("")
    }

    /// Whether the rule selects an object version by key, size and tags.
    pub fn selects(&self, key: &str, size: u64, metadata: &Value) -> bool {
        if !key.starts_with(self.key_prefix()) {
            return false;
        }
        let Some(f) = &self.filter else { return true };
        let tags = metadata.get("tags");
        let tags_ok = f.tags.iter().all(|(k, v)| {
            tags.and_then(|t| t.get(k))
                .and_then(Value::as_str)
                .is_some_and(|t| t == v)
        });
        let size = size as i64;
        tags_ok
            && f.size_greater_than.is_none_or(|g| size > g)
            && f.size_less_than.is_none_or(|l| size < l)
    }

    /// When S3 says an object written at `modified` expires under this rule: `Days` after it,
    /// rounded up to the next midnight UTC, or the rule's `Date`. None: the rule does not expire
    /// current versions.
    pub fn expiry_date(&self, modified: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if let Some(d) = self.expiration_date {
            return Some(d);
        }
        let days = self.expiration_days?;
        let at = modified + chrono::Duration::days(days as i64);
        let midnight = at.date_naive().and_hms_opt(0, 0, 0)?.and_utc();
        Some(if midnight == at {
            at
        } else {
            midnight + chrono::Duration::days(1)
        })
    }
}

/// The rule whose expiration applies to a current object first, with its date (the
/// `x-amz-expiration` header of HEAD).
pub fn expiration_of(rules: &[Rule], info: &ObjectInfo) -> Option<(DateTime<Utc>, String)> {
    rules
        .iter()
        .filter(|r| r.enabled && r.selects(&info.name, info.size, &info.metadata))
        .filter_map(|r| Some((r.expiry_date(info.updated_at)?, r.id.clone())))
        .min_by_key(|(d, _)| *d)
}

/// How far back `days` lifecycle days reach from `now`.
fn cutoff(now: DateTime<Utc>, days: i32, day: Duration) -> DateTime<Utc> {
    let span = day.saturating_mul(days.max(0) as u32);
    now - chrono::Duration::from_std(span).unwrap_or_else(|_| chrono::Duration::days(365_000))
}

/// At most this many objects per rule and pass: a large backlog is worked off pass by pass.
const BATCH: i64 = 1000;

impl Storage {
    /// A bucket's lifecycle rules (`None`: no configuration).
    pub async fn lifecycle(
        &self,
        actor: &Actor,
        bucket: &str,
    ) -> Result<Option<Vec<Rule>>, StorageError> {
        let rows = self
            .read_once(
                actor,
                "select s.lifecycle from storage.doska_bucket($1) b
                   left join storage.doska_bucket_settings s on s.bucket_id = b.id",
                &[(&bucket, Type::TEXT)],
            )
            .await?;
        let row = rows.first().ok_or(StorageError::NoSuchBucket)?;
        let value: Option<Value> = row.get(0);
        Ok(value.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Sets (or, with `None`, removes) a bucket's lifecycle rules.
    pub async fn set_lifecycle(
        &self,
        actor: &Actor,
        bucket: &str,
        rules: Option<&[Rule]>,
    ) -> Result<(), StorageError> {
        let value = rules.map(|r| serde_json::to_value(r).unwrap_or(Value::Null));
        self.set_setting(actor, bucket, "lifecycle", &value).await
    }

    /// One pass over every bucket's lifecycle rules, as service_role; returns how many versions
    /// and uploads it removed.
    pub async fn apply_lifecycle(&self, day: Duration) -> Result<usize, StorageError> {
        let actor = Actor::service("LIFECYCLE", "/storage/lifecycle");
        let tx = self.tx(&actor, true).await?;
        let rows = tx
            .client()
            .query(
                "select bucket_id, lifecycle from storage.doska_bucket_settings
                  where lifecycle is not null",
                &[],
            )
            .await?;
        tx.commit().await?;
        let mut done = 0;
        for row in rows {
            let bucket: String = row.get(0);
            let value: Value = row.get(1);
            let Ok(rules) = serde_json::from_value::<Vec<Rule>>(value) else {
                continue;
            };
            for rule in rules.iter().filter(|r| r.enabled) {
                done += self.apply_rule(&actor, &bucket, rule, day).await?;
            }
        }
        Ok(done)
    }

    async fn apply_rule(
        &self,
        actor: &Actor,
        bucket: &str,
        rule: &Rule,
        day: Duration,
    ) -> Result<usize, StorageError> {
        let now = Utc::now();
        let prefix = rule.key_prefix();
        let mut done = 0;
        // Current versions past their expiration.
        let due = match (rule.expiration_date, rule.expiration_days) {
            (Some(d), _) if d <= now => Some(now),
            (None, Some(days)) => Some(cutoff(now, days, day)),
            _ => None,
        };
        if let Some(due) = due {
            let rows = self
                .service_rows(
                    actor,
                    concat!(
                        "select ",
                        object_columns!(),
                        " from storage.objects where bucket_id = $1 and starts_with(name, $2)
                           and coalesce(updated_at, created_at) <= $3 order by name limit $4"
                    ),
                    &[&bucket, &prefix, &due, &BATCH],
                )
                .await?;
            let keys: Vec<String> = rows
                .iter()
                .filter_map(ObjectInfo::from_row)
                .filter(|o| rule.selects(&o.name, o.size, &o.metadata))
                .map(|o| o.name)
                .collect();
            if !keys.is_empty() {
                done += self.delete_current(actor, bucket, &keys).await?.0.len();
            }
        }
        // Noncurrent versions and delete markers, key by key, newest first.
        let rows = self
            .service_rows(
                actor,
                concat!(
                    "select ",
                    object_columns!(),
                    ", delete_marker, version_id, noncurrent_since,
                       exists (select 1 from storage.objects o
                                where o.bucket_id = v.bucket_id and o.name = v.name) as has_current
                     from storage.doska_object_versions v
                    where bucket_id = $1 and starts_with(name, $2)
                    order by name, seq desc limit $3"
                ),
                &[&bucket, &prefix, &(BATCH * 10)],
            )
            .await?;
        let mut doomed: Vec<(String, String)> = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let name: String = rows[i].get("name");
            let history: Vec<&Row> = rows[i..]
                .iter()
                .take_while(|r| r.get::<_, String>("name") == name)
                .collect();
            i += history.len();
            let has_current: bool = history[0].get("has_current");
            // Without a current version the newest entry is the latest (not noncurrent).
            let skip = usize::from(!has_current);
            if !has_current && history.len() == 1 && history[0].get::<_, bool>("delete_marker") {
                // An expired object delete marker: nothing left behind it.
                let marker_old = rule.expiration_days.is_some_and(|days| {
                    history[0].get::<_, DateTime<Utc>>("created_at") <= cutoff(now, days, day)
                });
                if rule.expired_object_delete_marker == Some(true) || marker_old {
                    doomed.push((name.clone(), history[0].get("version_id")));
                }
                continue;
            }
            let Some(days) = rule.noncurrent_days else {
                continue;
            };
            let keep = rule.newer_noncurrent_versions.unwrap_or(0).max(0) as usize;
            for r in history.iter().skip(skip).skip(keep) {
                let since: DateTime<Utc> = r.get("noncurrent_since");
                let Some(o) = ObjectInfo::from_row(r) else {
                    continue;
                };
                if since <= cutoff(now, days, day) && rule.selects(&o.name, o.size, &o.metadata) {
                    doomed.push((name.clone(), r.get("version_id")));
                }
            }
        }
        for (key, version) in doomed {
            if self
                .delete_version(actor, bucket, &key, &version)
                .await?
                .is_some()
            {
                done += 1;
            }
        }
        // Multipart uploads left incomplete.
        if let Some(days) = rule.abort_incomplete_days {
            let rows = self
                .service_rows(
                    actor,
                    "select id, key from storage.s3_multipart_uploads
                      where bucket_id = $1 and starts_with(key, $2) and created_at <= $3
                      order by created_at limit $4",
                    &[&bucket, &prefix, &cutoff(now, days, day), &BATCH],
                )
                .await?;
            for r in rows {
                let (id, key): (String, String) = (r.get(0), r.get(1));
                match self.abort_upload(actor, bucket, &key, &id).await {
                    Ok(()) => done += 1,
                    Err(StorageError::NoSuchUpload) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(done)
    }

    /// One read-only statement as `actor`.
    async fn service_rows(
        &self,
        actor: &Actor,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StorageError> {
        let tx = self.tx(actor, true).await?;
        let rows = tx.client().query(sql, params).await?;
        tx.commit().await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn expiry_rounds_up_to_midnight() {
        let r = Rule {
            expiration_days: Some(1),
            ..Rule::default()
        };
        assert_eq!(
            r.expiry_date(at("2026-01-01T12:00:00Z")),
            Some(at("2026-01-03T00:00:00Z"))
        );
        assert_eq!(
            r.expiry_date(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-02T00:00:00Z"))
        );
        assert_eq!(
            Rule::default().expiry_date(at("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn filters_select_by_prefix_tags_and_size() {
        let r = Rule {
            prefix: None,
            filter: Some(Filter {
                prefix: Some("tmp/".into()),
                tags: vec![("k".into(), "v".into())],
                and: true,
                size_greater_than: Some(10),
                size_less_than: None,
            }),
            ..Rule::default()
        };
        let tagged = json!({"tags": {"k": "v", "other": "x"}});
        assert!(r.selects("tmp/a", 11, &tagged));
        assert!(!r.selects("tmp/a", 10, &tagged), "size must be greater");
        assert!(!r.selects("keep/a", 11, &tagged), "prefix");
        assert!(
            !r.selects("tmp/a", 11, &json!({"tags": {"k": "w"}})),
            "tag value"
        );
        assert!(!r.selects("tmp/a", 11, &json!({})), "no tags");
        let legacy = Rule {
            prefix: Some("a/".into()),
            ..Rule::default()
        };
        assert!(legacy.selects("a/b", 0, &json!({})));
        assert!(!legacy.selects("b/a", 0, &json!({})));
    }

    #[test]
    fn cutoff_counts_configured_days() {
        let now = at("2026-01-01T00:01:00Z");
        assert_eq!(
            cutoff(now, 3, Duration::from_secs(10)),
            at("2026-01-01T00:00:30Z")
        );
    }
}
