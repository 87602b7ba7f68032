//! The S3 door's bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration, validated as S3
//! validates them, kept as the storage core's rules (which a background pass applies), and the
//! `x-amz-expiration` header HEAD and PutObject answer for an object a rule will expire. Refuses
//! an ID over 255 characters, repeated IDs, a Days or NoncurrentDays under 1, a Date not at
//! midnight UTC (InvalidArgument), a Status other than Enabled/Disabled, a rule without an action
//! or an Expiration with none or several of Days/Date/ExpiredObjectDeleteMarker (MalformedXML), and
//! transitions (InvalidStorageClass: doska has one storage class, STANDARD).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use chrono::{DateTime, Utc};

use super::*;
use crate::storage::core::{LifecycleFilter, LifecycleRule, expiration_of};

/// S3's limit on a configuration's rules.
const MAX_RULES: usize = 1000;

/// How long PutObject reuses a bucket's lifecycle rules it read for `x-amz-expiration`.
const RULES_FRESH: Duration = Duration::from_secs(1);
/// Past this many buckets, stale entries are dropped from [`RulesCache`].
const RULES_CACHED: usize = 1024;

/// Buckets' lifecycle rules as PutObject last read them, so a write's `x-amz-expiration` costs no
/// read of its own: each bucket's rules are read at most once per [`RULES_FRESH`] (as the
/// bucket's settings are, not as the caller: the header only describes the object just written).
/// A change made through this instance is seen at once; one made through another instance of a
/// cluster within [`RULES_FRESH`]. Only the header can lag: the background pass that expires
/// objects reads the rules afresh.
#[derive(Default)]
pub(super) struct RulesCache {
    rules: Mutex<HashMap<String, (Instant, Rules)>>,
}

/// A bucket's rules (`None`: no configuration).
type Rules = Option<Arc<Vec<LifecycleRule>>>;

impl RulesCache {
    fn fresh(&self, bucket: &str) -> Option<Rules> {
        let map = self.rules.lock().expect("lifecycle rules cache");
        map.get(bucket)
            .filter(|(at, _)| at.elapsed() < RULES_FRESH)
            .map(|(_, rules)| rules.clone())
    }

    fn keep(&self, bucket: &str, rules: Rules) {
        let mut map = self.rules.lock().expect("lifecycle rules cache");
        if map.len() >= RULES_CACHED {
            map.retain(|_, (at, _)| at.elapsed() < RULES_FRESH);
        }
        map.insert(bucket.to_string(), (Instant::now(), rules));
    }

    pub(super) fn forget(&self, bucket: &str) {
        self.rules
            .lock()
            .expect("lifecycle rules cache")
            .remove(bucket);
    }
}

/// The `x-amz-expiration` value for an object the rules expire.
fn expiration_value(rules: &[LifecycleRule], info: &ObjectInfo) -> Option<String> {
    let (date, id) = expiration_of(rules, info)?;
    let date = date.format("%a, %d %b %Y %H:%M:%S GMT");
    Some(format!("expiry-date=\"{date}\", rule-id=\"{id}\""))
}

fn invalid(why: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, why.to_string())
}

fn malformed(why: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedXML, why.to_string())
}

fn to_chrono(t: &Timestamp) -> Option<DateTime<Utc>> {
    let t = time::OffsetDateTime::from(t.clone());
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())
}

fn tags_of(tags: &[dto::Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t.key.clone().unwrap_or_default(),
                t.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn filter_of(f: &dto::LifecycleRuleFilter) -> LifecycleFilter {
    match &f.and {
        Some(a) => LifecycleFilter {
            prefix: a.prefix.clone(),
            tags: a.tags.as_deref().map(tags_of).unwrap_or_default(),
            and: true,
            size_greater_than: a.object_size_greater_than,
            size_less_than: a.object_size_less_than,
        },
        None => LifecycleFilter {
            prefix: f.prefix.clone(),
            tags: f
                .tag
                .as_ref()
                .map(|t| tags_of(std::slice::from_ref(t)))
                .unwrap_or_default(),
            and: false,
            size_greater_than: f.object_size_greater_than,
            size_less_than: f.object_size_less_than,
        },
    }
}

/// One rule as S3 sent it, checked; `n` numbers rules without an ID.
fn rule_of(r: &dto::LifecycleRule, n: usize) -> S3Result<LifecycleRule> {
    let id = r.id.clone().unwrap_or_else(|| format!("rule-{n}"));
    if id.chars().count() > 255 {
        return Err(invalid("A rule ID can have at most 255 characters"));
    }
    let enabled = match r.status.as_str() {
        dto::ExpirationStatus::ENABLED => true,
        dto::ExpirationStatus::DISABLED => false,
        _ => return Err(malformed("Status is Enabled or Disabled")),
    };
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidStorageClass,
            "doska keeps every object in one storage class (STANDARD): transitions are not supported",
        ));
    }
    if r.filter.is_some() && r.prefix.is_some() {
        return Err(malformed("A rule has a Filter or a Prefix, not both"));
    }
    let mut rule = LifecycleRule {
        id,
        enabled,
        prefix: r.prefix.clone(),
        filter: r.filter.as_ref().map(filter_of),
        ..LifecycleRule::default()
    };
    if let Some(f) = &rule.filter
        && let (Some(g), Some(l)) = (f.size_greater_than, f.size_less_than)
        && g >= l
    {
        return Err(invalid(
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan",
        ));
    }
    if let Some(e) = &r.expiration {
        let given = [
            e.days.is_some(),
            e.date.is_some(),
            e.expired_object_delete_marker.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(malformed(
                "An Expiration has one of Days, Date or ExpiredObjectDeleteMarker",
            ));
        }
        if let Some(d) = e.days {
            if d < 1 {
                return Err(invalid("Expiration Days must be a positive integer"));
            }
            rule.expiration_days = Some(d);
        }
        if let Some(d) = &e.date {
            let d = to_chrono(d).ok_or_else(|| invalid("Invalid Expiration Date"))?;
            if d.timestamp() % 86_400 != 0 {
                return Err(invalid("Expiration Date must be at midnight UTC"));
            }
            rule.expiration_date = Some(d);
        }
        rule.expired_object_delete_marker = e.expired_object_delete_marker;
    }
    if let Some(n) = &r.noncurrent_version_expiration {
        let days = n
            .noncurrent_days
            .ok_or_else(|| malformed("NoncurrentVersionExpiration needs NoncurrentDays"))?;
        if days < 1 {
            return Err(invalid("NoncurrentDays must be a positive integer"));
        }
        if n.newer_noncurrent_versions.is_some_and(|v| v < 1) {
            return Err(invalid(
                "NewerNoncurrentVersions must be a positive integer",
            ));
        }
        rule.noncurrent_days = Some(days);
        rule.newer_noncurrent_versions = n.newer_noncurrent_versions;
    }
    if let Some(a) = &r.abort_incomplete_multipart_upload {
        let days = a
            .days_after_initiation
            .ok_or_else(|| malformed("AbortIncompleteMultipartUpload needs DaysAfterInitiation"))?;
        if days < 1 {
            return Err(invalid("DaysAfterInitiation must be a positive integer"));
        }
        if rule.filter.as_ref().is_some_and(|f| !f.tags.is_empty()) {
            return Err(invalid(
                "AbortIncompleteMultipartUpload cannot be specified with Tags",
            ));
        }
        rule.abort_incomplete_days = Some(days);
    }
    if r.expiration.is_none()
        && r.noncurrent_version_expiration.is_none()
        && r.abort_incomplete_multipart_upload.is_none()
    {
        return Err(malformed("A rule needs at least one action"));
    }
    Ok(rule)
}

/// A kept rule as S3 answers it (the form it was given in).
fn dto_of(r: &LifecycleRule) -> dto::LifecycleRule {
    let tag = |(k, v): &(String, String)| dto::Tag {
        key: Some(k.clone()),
        value: Some(v.clone()),
    };
    let filter = r.filter.as_ref().map(|f| {
        if f.and {
            dto::LifecycleRuleFilter {
                and: Some(dto::LifecycleRuleAndOperator {
                    prefix: f.prefix.clone(),
                    tags: (!f.tags.is_empty()).then(|| f.tags.iter().map(tag).collect()),
                    object_size_greater_than: f.size_greater_than,
                    object_size_less_than: f.size_less_than,
                }),
                ..Default::default()
            }
        } else {
            dto::LifecycleRuleFilter {
                prefix: f.prefix.clone(),
                tag: f.tags.first().map(tag),
                object_size_greater_than: f.size_greater_than,
                object_size_less_than: f.size_less_than,
                ..Default::default()
            }
        }
    });
    let expiration = (r.expiration_days.is_some()
        || r.expiration_date.is_some()
        || r.expired_object_delete_marker.is_some())
    .then(|| dto::LifecycleExpiration {
        days: r.expiration_days,
        date: r.expiration_date.map(ts),
        expired_object_delete_marker: r.expired_object_delete_marker,
    });
    dto::LifecycleRule {
        id: Some(r.id.clone()),
        status: dto::ExpirationStatus::from_static(if r.enabled {
            dto::ExpirationStatus::ENABLED
        } else {
            dto::ExpirationStatus::DISABLED
        }),
        prefix: r.prefix.clone(),
        filter,
        expiration,
        noncurrent_version_expiration: r.noncurrent_days.map(|d| {
            dto::NoncurrentVersionExpiration {
                noncurrent_days: Some(d),
                newer_noncurrent_versions: r.newer_noncurrent_versions,
            }
        }),
        abort_incomplete_multipart_upload: r.abort_incomplete_days.map(|d| {
            dto::AbortIncompleteMultipartUpload {
                days_after_initiation: Some(d),
            }
        }),
        transitions: None,
        noncurrent_version_transitions: None,
    }
}

/// Checks a whole configuration: each rule, at most 1,000, IDs unique.
fn rules_of(config: &dto::BucketLifecycleConfiguration) -> S3Result<Vec<LifecycleRule>> {
    if config.rules.is_empty() {
        return Err(malformed(
            "A lifecycle configuration needs at least one rule",
        ));
    }
    if config.rules.len() > MAX_RULES {
        return Err(malformed(
            "A lifecycle configuration has at most 1,000 rules",
        ));
    }
    let rules = config
        .rules
        .iter()
        .enumerate()
        .map(|(n, r)| rule_of(r, n + 1))
        .collect::<S3Result<Vec<_>>>()?;
    for (i, r) in rules.iter().enumerate() {
        if rules[..i].iter().any(|o| o.id == r.id) {
            return Err(invalid("Rule IDs must be unique"));
        }
    }
    Ok(rules)
}

impl S3Door {
    pub(super) async fn serve_put_bucket_lifecycle(
        &self,
        req: S3Request<dto::PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<dto::PutBucketLifecycleConfigurationOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        let config = i
            .lifecycle_configuration
            .as_ref()
            .ok_or_else(|| malformed("A lifecycle configuration is required"))?;
        let rules = rules_of(config)?;
        self.core
            .set_lifecycle(&actor, &i.bucket, Some(&rules))
            .await
            .map_err(s3_err)?;
        self.lifecycle_rules.forget(&i.bucket);
        Ok(S3Response::new(
            dto::PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(super) async fn serve_get_bucket_lifecycle(
        &self,
        req: S3Request<dto::GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLifecycleConfigurationOutput>> {
        let actor = self.actor(&req).await?;
        let rules = self
            .core
            .lifecycle(&actor, &req.input.bucket)
            .await
            .map_err(s3_err)?
            .ok_or_else(|| s3_error!(NoSuchLifecycleConfiguration))?;
        Ok(S3Response::new(
            dto::GetBucketLifecycleConfigurationOutput {
                rules: Some(rules.iter().map(dto_of).collect()),
                ..Default::default()
            },
        ))
    }

    pub(super) async fn serve_delete_bucket_lifecycle(
        &self,
        req: S3Request<dto::DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketLifecycleOutput>> {
        let actor = self.actor(&req).await?;
        self.core
            .set_lifecycle(&actor, &req.input.bucket, None)
            .await
            .map_err(s3_err)?;
        self.lifecycle_rules.forget(&req.input.bucket);
        Ok(S3Response::new(dto::DeleteBucketLifecycleOutput::default()))
    }

    /// HEAD's `x-amz-expiration` for an object a rule of its bucket will expire.
    pub(super) async fn expiration_header(
        &self,
        actor: &Actor,
        info: &ObjectInfo,
    ) -> Option<http::HeaderValue> {
        let rules = self
            .core
            .lifecycle(actor, &info.bucket_id)
            .await
            .ok()
            .flatten()?;
        http::HeaderValue::from_str(&expiration_value(&rules, info)?).ok()
    }

    /// PutObject's `x-amz-expiration` for the object just written, from the bucket's rules as
    /// [`RulesCache`] keeps them. A failed read of the rules leaves the header out (the write
    /// itself has succeeded).
    pub(super) async fn put_expiration(&self, info: &ObjectInfo) -> Option<String> {
        let bucket = &info.bucket_id;
        let rules = match self.lifecycle_rules.fresh(bucket) {
            Some(rules) => rules,
            None => {
                let service = Actor::service("GET", bucket);
                let rules = self
                    .core
                    .lifecycle(&service, bucket)
                    .await
                    .ok()?
                    .map(Arc::new);
                self.lifecycle_rules.keep(bucket, rules.clone());
                rules
            }
        };
        expiration_value(&rules?, info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, days: Option<i32>, status: &'static str) -> dto::LifecycleRule {
        dto::LifecycleRule {
            id: Some(id.into()),
            status: dto::ExpirationStatus::from_static(status),
            prefix: Some("tmp/".into()),
            expiration: Some(dto::LifecycleExpiration {
                days,
                ..Default::default()
            }),
            abort_incomplete_multipart_upload: None,
            filter: None,
            noncurrent_version_expiration: None,
            noncurrent_version_transitions: None,
            transitions: None,
        }
    }

    fn code(rules: Vec<dto::LifecycleRule>) -> Option<String> {
        rules_of(&dto::BucketLifecycleConfiguration { rules })
            .err()
            .map(|e| e.code().as_str().to_string())
    }

    #[test]
    fn bad_configurations_get_s3s_codes() {
        assert_eq!(code(vec![rule("a", Some(1), "Enabled")]), None);
        assert_eq!(code(vec![rule("a", Some(1), "Disabled")]), None);
        let table: Vec<(Vec<dto::LifecycleRule>, &str)> = vec![
            (
                vec![rule(&"x".repeat(256), Some(1), "Enabled")],
                "InvalidArgument",
            ),
            (
                vec![rule("a", Some(1), "Enabled"), rule("a", Some(2), "Enabled")],
                "InvalidArgument",
            ),
            (vec![rule("a", Some(1), "enabled")], "MalformedXML"),
            (vec![rule("a", Some(0), "Enabled")], "InvalidArgument"),
            (vec![rule("a", None, "Enabled")], "MalformedXML"),
            (vec![], "MalformedXML"),
        ];
        for (rules, want) in table {
            assert_eq!(code(rules).as_deref(), Some(want));
        }
    }

    #[test]
    fn rules_answer_as_given() {
        let given = rule("a", Some(3), "Enabled");
        let kept = rules_of(&dto::BucketLifecycleConfiguration {
            rules: vec![given.clone()],
        })
        .unwrap();
        assert_eq!(dto_of(&kept[0]), given);
    }
}
