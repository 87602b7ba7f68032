//! The S3 door's bucket versioning: Put/GetBucketVersioning, ListObjectVersions, and the
//! version-aware reads (GET/HEAD/CopyObject's source by `versionId`) and deletes (DeleteObject,
//! DeleteObjects: a delete marker, or one version for good), over the storage core's versions as
//! the caller. Refuses a configuration without a status (MalformedXML), MFA delete
//! (NotImplemented), unknown versions (NoSuchVersion) and reads of a delete marker
//! (MethodNotAllowed, with `x-amz-delete-marker`).

use super::*;
use crate::storage::core::{VersionInfo, VersionQuery, answered_version_id};

/// An error answer that carries `x-amz-delete-marker`: `true` (and the marker's version id) for a
/// read that ran into a delete marker, `false` for a key with none, as S3 (Ceph) marks them.
fn with_marker(mut e: S3Error, version_id: Option<&str>) -> S3Error {
    let mut h = http::HeaderMap::new();
    let marker = if version_id.is_some() {
        "true"
    } else {
        "false"
    };
    h.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static(marker),
    );
    if let Some(v) = version_id.and_then(|v| http::HeaderValue::from_str(v).ok()) {
        h.insert("x-amz-version-id", v);
    }
    e.set_headers(h);
    e
}

/// A version id doska can have made: `null` or a UUID. Any other names no version (NoSuchVersion).
fn check_version_id(v: &str) -> S3Result<()> {
    if v == "null" || uuid::Uuid::parse_str(v).is_ok() {
        Ok(())
    } else {
        Err(s3_err(StorageError::NoSuchVersion))
    }
}

/// A delete's conditions: the ETag (`*` for any), last-modified time and size it names.
#[derive(Default)]
struct DeleteConditions<'a> {
    etag: Option<String>,
    modified: Option<&'a Timestamp>,
    size: Option<i64>,
}

impl DeleteConditions<'_> {
    fn none(&self) -> bool {
        self.etag.is_none() && self.modified.is_none() && self.size.is_none()
    }

    /// Whether they hold for a version; `None`: a delete marker, which only `If-Match: *` matches.
    fn hold(&self, info: Option<&ObjectInfo>) -> bool {
        let Some(info) = info else {
            return self.modified.is_none()
                && self.size.is_none()
                && self.etag.as_deref().is_none_or(|e| e == "*");
        };
        let etag_ok = self
            .etag
            .as_deref()
            .is_none_or(|e| e == "*" || e.trim_matches('"') == info.etag.trim_matches('"'));
        let modified_ok = self.modified.is_none_or(|t| {
            modified_secs(std::time::SystemTime::from(info.updated_at))
                == modified_secs(std::time::SystemTime::from(time::OffsetDateTime::from(
                    t.clone(),
                )))
        });
        let size_ok = self.size.is_none_or(|s| s == info.size as i64);
        etag_ok && modified_ok && size_ok
    }
}

impl S3Door {
    /// A delete's conditions (`If-Match`, `x-amz-if-match-last-modified-time`,
    /// `x-amz-if-match-size`) against the version it deletes (the current one without
    /// `version_id`): a mismatch is PreconditionFailed. A key or version that does not exist passes
    /// (deleting it changes nothing, as in S3: a conditional delete of a key without a current
    /// version leaves no delete marker either — `Ok(false)`); a key whose latest version is a
    /// delete marker matches only `If-Match: *`. Checked just before the delete, as a write's are.
    async fn delete_conditions(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        c: &DeleteConditions<'_>,
    ) -> S3Result<bool> {
        if c.none() {
            return Ok(true);
        }
        let (holds, something) = match version_id {
            Some(v) => match self.core.head_version(actor, bucket, key, v).await {
                Ok(found) => (
                    c.hold((!found.delete_marker).then_some(&found.object)),
                    true,
                ),
                Err(StorageError::NoSuchVersion) => (true, false),
                Err(e) => return Err(s3_err(e)),
            },
            None => match self.core.head(actor, bucket, key).await {
                Ok(info) => (c.hold(Some(&info)), true),
                Err(StorageError::NoSuchKey) => {
                    match self.core.latest_marker(actor, bucket, key).await {
                        Ok(Some(_)) => (c.hold(None), false),
                        Ok(None) => (true, false),
                        Err(e) => return Err(s3_err(e)),
                    }
                }
                Err(e) => return Err(s3_err(e)),
            },
        };
        if holds {
            Ok(something)
        } else {
            Err(s3_error!(PreconditionFailed))
        }
    }

    pub(super) async fn serve_put_bucket_versioning(
        &self,
        req: S3Request<dto::PutBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::PutBucketVersioningOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        let c = &i.versioning_configuration;
        if c.mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == dto::MFADelete::ENABLED)
        {
            return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
        }
        let state = match c.status.as_ref().map(|s| s.as_str()) {
            Some(
                s @ (dto::BucketVersioningStatus::ENABLED | dto::BucketVersioningStatus::SUSPENDED),
            ) => s.to_string(),
            Some(_) => return Err(s3_error!(MalformedXML, "Status is Enabled or Suspended")),
            None => {
                return Err(s3_error!(
                    MalformedXML,
                    "A versioning configuration needs a Status"
                ));
            }
        };
        self.core
            .set_versioning(&actor, &i.bucket, &state)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::PutBucketVersioningOutput::default()))
    }

    pub(super) async fn serve_get_bucket_versioning(
        &self,
        req: S3Request<dto::GetBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::GetBucketVersioningOutput>> {
        let actor = self.actor(&req).await?;
        let state = self
            .core
            .versioning(&actor, &req.input.bucket)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::GetBucketVersioningOutput {
            status: state.map(dto::BucketVersioningStatus::from),
            ..Default::default()
        }))
    }

    /// The object a GET/HEAD/copy names: the current version, or the one `version_id` names. A
    /// delete marker answers MethodNotAllowed (named) or NoSuchKey (current), each with
    /// `x-amz-delete-marker`.
    pub(super) async fn named_version(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<ObjectInfo> {
        let Some(v) = version_id else {
            return match self.core.head(actor, bucket, key).await {
                Ok(info) => Ok(info),
                Err(e) => Err(self.current_err(actor, bucket, key, e).await),
            };
        };
        check_version_id(v)?;
        match self.core.head_version(actor, bucket, key, v).await {
            Ok(VersionInfo {
                delete_marker: true,
                ..
            }) => Err(with_marker(
                s3_error!(
                    MethodNotAllowed,
                    "The specified method is not allowed against a delete marker"
                ),
                Some(v),
            )),
            Ok(found) => Ok(found.object),
            Err(StorageError::NoSuchVersion) => {
                if matches!(self.core.bucket_exists(actor, bucket).await, Ok(false)) {
                    Err(s3_error!(NoSuchBucket))
                } else {
                    Err(s3_err(StorageError::NoSuchVersion))
                }
            }
            Err(e) => Err(self.read_err(actor, bucket, e).await),
        }
    }

    /// A read of a key's current version failed: as [`S3Door::read_err`], and a key whose latest
    /// version is a delete marker says so (`x-amz-delete-marker`, the marker's id).
    pub(super) async fn current_err(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        e: StorageError,
    ) -> S3Error {
        let missing = matches!(e, StorageError::NoSuchKey);
        let e = self.read_err(actor, bucket, e).await;
        if missing
            && e.code() == &S3ErrorCode::NoSuchKey
            && let Ok(marker) = self.core.latest_marker(actor, bucket, key).await
        {
            return with_marker(e, marker.as_deref());
        }
        e
    }

    /// GetObject's bytes: the current version's, or those of the version `version_id` names.
    pub(super) async fn read_named(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        range: Option<ByteRange>,
    ) -> S3Result<(ObjectInfo, ByteStream, Option<(u64, u64)>)> {
        let Some(v) = version_id else {
            return match self.core.get(actor, bucket, key, range).await {
                Ok(got) => Ok(got),
                Err(e) => Err(self.current_err(actor, bucket, key, e).await),
            };
        };
        // Named first, so a marker or an unknown version answers as S3 does.
        self.named_version(actor, bucket, key, Some(v)).await?;
        match self.core.get_version(actor, bucket, key, v, range).await {
            Ok((found, stream, span)) => Ok((found.object, stream, span)),
            Err(e) => Err(s3_err(e)),
        }
    }

    pub(super) async fn serve_list_object_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        self.require_bucket(&actor, &i.bucket).await?;
        let max = max_keys(i.max_keys);
        let prefix = i.prefix.clone().unwrap_or_default();
        let key_marker = i.key_marker.clone().filter(|m| !m.is_empty());
        if key_marker.is_none()
            && i.version_id_marker
                .as_deref()
                .is_some_and(|v| !v.is_empty())
        {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        let page = self
            .core
            .list_versions(
                &actor,
                &i.bucket,
                &VersionQuery {
                    prefix: &prefix,
                    delimiter: i.delimiter.as_deref(),
                    key_marker: key_marker.as_deref(),
                    version_marker: i.version_id_marker.as_deref(),
                    max,
                },
            )
            .await
            .map_err(s3_err)?;
        let enc = &i.encoding_type;
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for v in &page.versions {
            let o = &v.object;
            if v.delete_marker {
                markers.push(dto::DeleteMarkerEntry {
                    is_latest: Some(v.is_latest),
                    key: Some(encode_key(enc, o.name.clone())),
                    last_modified: Some(ts(o.updated_at)),
                    owner: Some(owner(o.owner_id.as_deref())),
                    version_id: Some(v.version_id.clone()),
                });
            } else {
                versions.push(dto::ObjectVersion {
                    e_tag: Some(etag(&o.etag)),
                    is_latest: Some(v.is_latest),
                    key: Some(encode_key(enc, o.name.clone())),
                    last_modified: Some(ts(o.updated_at)),
                    owner: Some(owner(o.owner_id.as_deref())),
                    size: Some(o.size as i64),
                    storage_class: Some(dto::ObjectVersionStorageClass::from_static(
                        dto::ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id: Some(v.version_id.clone()),
                    ..Default::default()
                });
            }
        }
        let common_prefixes: Vec<dto::CommonPrefix> = page
            .prefixes
            .iter()
            .map(|p| dto::CommonPrefix {
                prefix: Some(encode_key(enc, p.clone())),
            })
            .collect();
        let (next_key, next_version) = match page.next.clone() {
            Some((k, v)) => (Some(encode_key(enc, k)), v),
            None => (None, None),
        };
        Ok(S3Response::new(dto::ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(encode_key(enc, prefix)),
            key_marker: Some(i.key_marker.unwrap_or_default()),
            version_id_marker: Some(i.version_id_marker.unwrap_or_default()),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            versions: (!versions.is_empty()).then_some(versions),
            delete_markers: (!markers.is_empty()).then_some(markers),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            delimiter: i
                .delimiter
                .filter(|d| !d.is_empty())
                .map(|d| encode_key(enc, d)),
            encoding_type: i.encoding_type.clone(),
            ..Default::default()
        }))
    }

    pub(super) async fn serve_delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let actor = self.actor(&req).await?;
        let i = &req.input;
        self.require_bucket(&actor, &i.bucket).await?;
        let conditions = DeleteConditions {
            etag: i.if_match.as_ref().map(|c| match c {
                dto::ETagCondition::Any => "*".to_string(),
                dto::ETagCondition::ETag(e) => e.value().to_string(),
            }),
            modified: i.if_match_last_modified_time.as_ref(),
            size: i.if_match_size,
        };
        if let Some(v) = i.version_id.as_deref() {
            check_version_id(v)?;
            if !self
                .delete_conditions(&actor, &i.bucket, &i.key, Some(v), &conditions)
                .await?
            {
                return Ok(S3Response::new(dto::DeleteObjectOutput::default()));
            }
            let gone = self
                .core
                .delete_version(&actor, &i.bucket, &i.key, v)
                .await
                .map_err(s3_err)?;
            return Ok(S3Response::new(dto::DeleteObjectOutput {
                delete_marker: gone.as_ref().and_then(|g| g.delete_marker.then_some(true)),
                version_id: Some(v.to_string()),
                ..Default::default()
            }));
        }
        if !self
            .delete_conditions(&actor, &i.bucket, &i.key, None, &conditions)
            .await?
        {
            return Ok(S3Response::new(dto::DeleteObjectOutput::default()));
        }
        // S3 answers 204 whether or not the key existed.
        let (_, deleted) = self
            .core
            .delete_current(&actor, &i.bucket, std::slice::from_ref(&i.key))
            .await
            .map_err(s3_err)?;
        let marker = deleted.into_iter().next().and_then(|d| d.marker);
        Ok(S3Response::new(dto::DeleteObjectOutput {
            delete_marker: marker.as_ref().map(|_| true),
            version_id: marker,
            ..Default::default()
        }))
    }

    pub(super) async fn serve_delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let actor = self.actor(&req).await?;
        let bucket = &req.input.bucket;
        self.require_bucket(&actor, bucket).await?;
        let objects = &req.input.delete.objects;
        if objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "A DeleteObjects request may name at most 1,000 keys"
            ));
        }
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        let mut current = Vec::new();
        for o in objects {
            // Each key's own conditions (ETag, last-modified time, size), as DeleteObject's.
            let conditions = DeleteConditions {
                etag: o.e_tag.as_ref().map(|e| e.value().to_string()),
                modified: o.last_modified_time.as_ref(),
                size: o.size,
            };
            let version = o.version_id.as_deref();
            if let Some(v) = version
                && let Err(e) = check_version_id(v)
            {
                errors.push((o, e));
                continue;
            }
            match self
                .delete_conditions(&actor, bucket, &o.key, version, &conditions)
                .await
            {
                Ok(true) => {}
                // Nothing there to delete: reported deleted, as S3 does.
                Ok(false) => {
                    deleted.push(dto::DeletedObject {
                        key: Some(o.key.clone()),
                        version_id: version.map(str::to_string),
                        ..Default::default()
                    });
                    continue;
                }
                Err(e) => {
                    errors.push((o, e));
                    continue;
                }
            }
            let Some(v) = version else {
                current.push(o.key.clone());
                continue;
            };
            match self.core.delete_version(&actor, bucket, &o.key, v).await {
                Ok(gone) => deleted.push(dto::DeletedObject {
                    key: Some(o.key.clone()),
                    version_id: Some(v.to_string()),
                    delete_marker: gone.as_ref().and_then(|g| g.delete_marker.then_some(true)),
                    delete_marker_version_id: gone
                        .filter(|g| g.delete_marker)
                        .map(|g| g.version_id),
                }),
                Err(e) => errors.push((o, s3_err(e))),
            }
        }
        if !current.is_empty() {
            let (_, gone) = self
                .core
                .delete_current(&actor, bucket, &current)
                .await
                .map_err(s3_err)?;
            for d in gone {
                deleted.push(dto::DeletedObject {
                    key: Some(d.key),
                    delete_marker: d.marker.as_ref().map(|_| true),
                    delete_marker_version_id: d.marker,
                    ..Default::default()
                });
            }
        }
        let quiet = req.input.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: (!errors.is_empty()).then(|| {
                errors
                    .iter()
                    .map(|(o, e)| dto::Error {
                        code: Some(e.code().as_str().to_string()),
                        key: Some(o.key.clone()),
                        message: e.message().map(str::to_string),
                        version_id: o.version_id.clone(),
                    })
                    .collect()
            }),
            ..Default::default()
        }))
    }
}

/// The version id a write or read answers with (`x-amz-version-id`).
pub(super) fn version_header(info: &ObjectInfo) -> Option<String> {
    answered_version_id(info)
}
