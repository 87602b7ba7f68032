//! The storage API's object versions (a doska addition in Supabase's dialect, docs/storage.md):
//! a bucket's versioning state (`GET`/`PUT /bucket/{id}/versioning`), a key's history
//! (`GET /object/versions/{bucket}/{key}`) and restoring an old version as the current one
//! (`POST /object/restore/{bucket}/{key}` with `{"versionId": …}`), each as the caller — the storage
//! policies decide. Rejects a body without a valid `status` or `versionId` (400), unknown versions
//! (404 NoSuchVersion) and the restore of a delete marker (400).

use http::StatusCode;
use serde_json::{Value, json};

use super::{
    api::{ApiError, ApiResult},
    core::{Actor, PutSpec, Storage, VersionQuery},
};
use crate::http::body;

fn ok(v: Value) -> ApiResult {
    Ok(body::json(StatusCode::OK, &v))
}

/// `GET /bucket/{id}/versioning`: `{"status": "Enabled" | "Suspended" | null}`.
pub(super) async fn get_versioning(core: &Storage, actor: &Actor, bucket: &str) -> ApiResult {
    let state = core.versioning(actor, bucket).await?;
    ok(json!({ "status": state }))
}

/// `PUT /bucket/{id}/versioning` with `{"status": "Enabled" | "Suspended"}`: the operator's
/// (service_role's) to change, as other bucket settings.
pub(super) async fn set_versioning(
    core: &Storage,
    actor: &Actor,
    bucket: &str,
    v: &Value,
) -> ApiResult {
    let status = match v.get("status").and_then(Value::as_str) {
        Some(s @ ("Enabled" | "Suspended")) => s,
        _ => {
            return Err(ApiError::BadRequest(
                "body needs `status`: \"Enabled\" or \"Suspended\"".into(),
            ));
        }
    };
    core.set_versioning(actor, bucket, status).await?;
    ok(json!({ "message": "Successfully updated", "status": status }))
}

/// `GET /object/versions/{bucket}/{key}`: the key's versions, newest first.
pub(super) async fn list(core: &Storage, actor: &Actor, bucket: &str, key: &str) -> ApiResult {
    let mut out = Vec::new();
    let mut marker: Option<(String, Option<String>)> = None;
    loop {
        let page = core
            .list_versions(
                actor,
                bucket,
                &VersionQuery {
                    prefix: key,
                    delimiter: None,
                    key_marker: marker.as_ref().map(|m| m.0.as_str()),
                    version_marker: marker.as_ref().and_then(|m| m.1.as_deref()),
                    max: 1000,
                },
            )
            .await?;
        for v in page.versions.iter().filter(|v| v.object.name == key) {
            let o = &v.object;
            out.push(json!({
                "version_id": v.version_id,
                "is_latest": v.is_latest,
                "delete_marker": v.delete_marker,
                "size": (!v.delete_marker).then_some(o.size),
                "etag": (!v.delete_marker).then(|| o.etag.clone()),
                "content_type": (!v.delete_marker).then(|| o.content_type.clone()),
                "last_modified": o.updated_at,
                "owner_id": o.owner_id,
            }));
        }
        // Keys under `key` as a prefix sort after it: past them, the key's history is complete.
        let past = page.versions.last().is_some_and(|v| v.object.name != key);
        match page.next {
            Some(next) if page.truncated && !past => marker = Some(next),
            _ => break,
        }
    }
    if out.is_empty() {
        return Err(super::core::StorageError::NoSuchKey.into());
    }
    ok(Value::Array(out))
}

/// `POST /object/restore/{bucket}/{key}` with `{"versionId": …}`: the version's bytes and content
/// headers become a new current version (the one it replaces is kept in a versioned bucket).
pub(super) async fn restore(
    core: &Storage,
    actor: &Actor,
    bucket: &str,
    key: &str,
    v: &Value,
) -> ApiResult {
    let Some(version_id) = v.get("versionId").and_then(Value::as_str) else {
        return Err(ApiError::BadRequest("body needs `versionId`".into()));
    };
    let src = core.head_version(actor, bucket, key, version_id).await?;
    if src.delete_marker {
        return Err(super::core::StorageError::IsDeleteMarker.into());
    }
    let o = &src.object;
    // The version's own attributes beside Supabase's keys (content headers, checksums, tags).
    let extra = match &o.metadata {
        Value::Object(m) => {
            let mut m = m.clone();
            for k in [
                "eTag",
                "size",
                "mimetype",
                "cacheControl",
                "lastModified",
                "contentLength",
                "httpStatusCode",
                "versionId",
            ] {
                m.remove(k);
            }
            (!m.is_empty()).then_some(Value::Object(m))
        }
        _ => None,
    };
    let spec = PutSpec {
        bucket: bucket.to_string(),
        key: key.to_string(),
        upsert: true,
        content_type: o.content_type.clone(),
        cache_control: o.cache_control.clone(),
        user_metadata: o.user_metadata.clone(),
        declared_len: Some(o.size),
        extra,
    };
    let info = core
        .copy_version(actor, bucket, key, Some(version_id), &spec)
        .await?;
    ok(json!({
        "Key": format!("{bucket}/{key}"),
        "version_id": super::core::version_id_of(&info),
        "restored_from": version_id,
    }))
}
