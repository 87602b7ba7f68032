//! TUS 1.0 resumable uploads at `/storage/v1/upload/resumable`, as Supabase serves them to
//! tus-js-client: POST creates an upload (`Upload-Length`, `Upload-Metadata` with bucketName,
//! objectName, contentType, cacheControl; `x-upsert`), HEAD tells the offset, PATCH appends at the
//! offset, DELETE cancels. Each PATCH becomes one durable piece of the upload; when the last byte
//! arrives the object is committed as the caller, under RLS, made of those pieces. A PATCH cut off
//! mid-way keeps nothing of itself, so the client resumes from the end of its last complete PATCH
//! (tus-js-client's `chunkSize` bounds what a cut costs). Rejects deferred lengths, wrong offsets
//! (409), bodies past the announced length (413) and uploads of other callers (404).

use std::collections::HashMap;

use base64::Engine;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{
    api::{ApiError, incoming_stream},
    core::{Actor, PutSpec, Storage},
};
use crate::http::body::{self, Body};

const TUS_VERSION: &str = "1.0.0";

/// Upload-Metadata: `key base64value,key base64value`; empty items (`a YQ==,`, an empty header)
/// are no keys.
pub(super) fn metadata(h: &str) -> HashMap<String, String> {
    h.split(',')
        .filter_map(|pair| {
            let mut it = pair.trim().splitn(2, ' ');
            let k = it.next()?.trim();
            if k.is_empty() {
                return None;
            }
            let v = it.next().unwrap_or("").trim();
            let v = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
            Some((k.to_string(), String::from_utf8(v).ok()?))
        })
        .collect()
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn tus_response(status: StatusCode) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header("tus-resumable", TUS_VERSION)
        .header(header::CACHE_CONTROL, "no-store")
}

/// Handles everything under `/upload/resumable` (`rest` is what follows it).
pub async fn handle(
    core: &Storage,
    actor: &Actor,
    req: Request<Incoming>,
    rest: &str,
) -> Result<Response<Body>, ApiError> {
    let id = rest.trim_matches('/');
    let method = req
        .headers()
        .get("x-http-method-override")
        .and_then(|v| v.to_str().ok())
        .and_then(|m| m.parse::<Method>().ok())
        .unwrap_or_else(|| req.method().clone());
    match (method.as_str(), id.is_empty()) {
        ("OPTIONS", _) => Ok(tus_response(StatusCode::NO_CONTENT)
            .header("tus-version", TUS_VERSION)
            .header("tus-extension", "creation,termination")
            .body(body::empty())
            .expect("valid response")),
        ("POST", true) => create(core, actor, &req).await,
        ("HEAD", false) => {
            let s = core.tus_state(actor, id).await?;
            Ok(tus_response(StatusCode::OK)
                .header("upload-offset", s.offset)
                .header("upload-length", s.length)
                .body(body::empty())
                .expect("valid response"))
        }
        ("PATCH", false) => patch(core, actor, req, id).await,
        ("DELETE", false) => {
            let s = core.tus_state(actor, id).await?;
            core.abort_upload(actor, &s.bucket, &s.key, id).await?;
            Ok(tus_response(StatusCode::NO_CONTENT)
                .body(body::empty())
                .expect("valid response"))
        }
        _ => Err(ApiError::NotFound),
    }
}

async fn create(
    core: &Storage,
    actor: &Actor,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let length: u64 = header(req, "upload-length")
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Upload-Length is required (deferred lengths are not supported)".into(),
            )
        })?;
    let meta = metadata(header(req, "upload-metadata").unwrap_or(""));
    let field = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| ApiError::BadRequest(format!("Upload-Metadata needs {k}")))
    };
    let spec = PutSpec {
        bucket: field("bucketName")?,
        key: field("objectName")?,
        upsert: header(req, "x-upsert").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        content_type: meta
            .get("contentType")
            .cloned()
            .unwrap_or_else(|| "application/octet-stream".into()),
        cache_control: meta.get("cacheControl").map(|c| {
            if c.chars().all(|ch| ch.is_ascii_digit()) {
                format!("max-age={c}")
            } else {
                c.clone()
            }
        }),
        user_metadata: meta
            .get("metadata")
            .and_then(|m| serde_json::from_str(m).ok()),
        declared_len: Some(length),
        extra: None,
    };
    let id = core.create_upload(actor, &spec, Some(length)).await?;
    Ok(tus_response(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/storage/v1/upload/resumable/{id}"),
        )
        .header("upload-offset", 0)
        .body(body::empty())
        .expect("valid response"))
}

async fn patch(
    core: &Storage,
    actor: &Actor,
    req: Request<Incoming>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    if header(&req, "content-type") != Some("application/offset+octet-stream") {
        return Err(ApiError::Unsupported(
            "PATCH needs Content-Type: application/offset+octet-stream".into(),
        ));
    }
    let offset: u64 = header(&req, "upload-offset")
        .and_then(|o| o.trim().parse().ok())
        .ok_or_else(|| ApiError::BadRequest("Upload-Offset is required".into()))?;
    let state = core.tus_state(actor, id).await?;
    if offset != state.offset {
        return Err(ApiError::OffsetMismatch(state.offset));
    }
    let remaining = state.length - state.offset;
    let number = state.parts.last().map(|p| p.0 + 1).unwrap_or(1);
    let body = incoming_stream(req.into_body());
    let mut parts = state.parts.clone();
    let mut offset = state.offset;
    if remaining > 0 {
        let (etag, size) = core
            .upload_part(
                actor,
                &state.bucket,
                &state.key,
                id,
                number,
                body,
                Some(remaining),
            )
            .await?;
        if size > 0 {
            parts.push((number, etag));
        }
        offset += size;
    }
    if offset == state.length {
        if parts.is_empty() {
            // An empty file: one empty piece makes it an object of one (empty) part.
            let (etag, _) = core
                .upload_part(
                    actor,
                    &state.bucket,
                    &state.key,
                    id,
                    1,
                    super::disk::once(bytes::Bytes::new()),
                    Some(0),
                )
                .await?;
            parts.push((1, etag));
        }
        core.complete_upload(actor, &state.bucket, &state.key, id, &parts)
            .await?;
    }
    Ok(tus_response(StatusCode::NO_CONTENT)
        .header("upload-offset", offset)
        .body(body::empty())
        .expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_upload_metadata() {
        let m = metadata("bucketName bWF0ZXJpYWxz,objectName YS9iIGMudHh0,empty");
        assert_eq!(m["bucketName"], "materials");
        assert_eq!(m["objectName"], "a/b c.txt");
        assert_eq!(m["empty"], "");
    }

    /// Found by the metadata round-trip property: an empty header (or a trailing comma) read as a
    /// key named "".
    #[test]
    fn empty_items_are_no_keys() {
        assert!(metadata("").is_empty());
        let m = metadata("a YQ==, ,");
        assert_eq!(m.len(), 1);
        assert_eq!(m["a"], "a");
    }
}
