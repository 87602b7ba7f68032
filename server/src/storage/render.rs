//! Image transformations (`/storage/v1/render/image/…`, Supabase's render routes): an object the
//! caller may read, resized and re-encoded as `params` asks, by `pixels`, kept in the `cache` per
//! object version. The door (`http`) decides who is reading (the caller under RLS, the service for
//! a public bucket or a signed URL) and hands this stage the actor; this stage reads the object
//! through the storage core as that actor, so access is exactly a download's. The CPU work runs
//! on tokio's blocking pool, at most one render per core at a time (the rest wait their turn).
//! Rejects bad parameters (400), sources that are not images (422) and sources too large to
//! render (413), in storage's `{statusCode, error, message}` shape.

pub mod cache;
pub mod params;
pub mod pixels;

use std::sync::Arc;

use futures_util::TryStreamExt;
use http::{HeaderMap, Response, StatusCode, header};
use tokio::sync::Semaphore;

use self::{
    cache::Cache,
    params::{ParamError, Transform},
    pixels::{ImageKind, MAX_SOURCE_BYTES, PixelError},
};
use super::{
    api::{ApiError, ApiResult},
    core::{Actor, ObjectInfo, Storage},
};
use crate::http::body;

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::Refused {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidRequest",
            message: e.to_string(),
        }
    }
}

impl From<PixelError> for ApiError {
    fn from(e: PixelError) -> Self {
        let (status, code) = match e {
            PixelError::Unsupported => (StatusCode::UNPROCESSABLE_ENTITY, "InvalidImage"),
            PixelError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "EntityTooLarge"),
        };
        ApiError::Refused {
            status,
            code,
            message: e.to_string(),
        }
    }
}

/// The render stage's state: the cache and the renders' turn-taking.
pub struct Renderer {
    cache: Arc<Cache>,
    permits: Arc<Semaphore>,
}

impl Renderer {
    /// A renderer keeping its cache under `data_dir` (created when first written).
    pub fn new(data_dir: &std::path::Path) -> Renderer {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Renderer {
            cache: Arc::new(Cache::new(data_dir.join("render-cache"), cache::MAX_BYTES)),
            permits: Arc::new(Semaphore::new(cores)),
        }
    }

    /// Answers `bucket/key` rendered as `t`, read as `actor`. `headers` are the request's
    /// (`Accept` picks WebP; `If-None-Match` may answer 304).
    pub async fn render(
        &self,
        core: &Storage,
        actor: &Actor,
        headers: &HeaderMap,
        bucket: &str,
        key: &str,
        t: &Transform,
    ) -> ApiResult {
        let accepts_webp = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("image/webp"));
        let webp = pixels::output_kind(ImageKind::Png, t.format, accepts_webp) == ImageKind::Webp;
        let info = core.head(actor, bucket, key).await?;
        let fresh = response_head(&info, t);
        if etag_matches(headers, &info.etag) {
            return Ok(fresh
                .status(StatusCode::NOT_MODIFIED)
                .body(body::empty())
                .expect("valid response"));
        }
        if info.size > MAX_SOURCE_BYTES {
            return Err(PixelError::TooLarge { pixels: false }.into());
        }
        let name = Cache::name(info.version, t, webp);
        let cache = self.cache.clone();
        let kept = blocking(move || cache.get(&name)).await?;
        let bytes = match kept {
            Some(bytes) => bytes,
            None => self.render_fresh(core, actor, bucket, key, t, webp).await?,
        };
        let kind = ImageKind::sniff(&bytes).ok_or(PixelError::Unsupported)?;
        Ok(fresh
            .header(header::CONTENT_TYPE, kind.content_type())
            .header(header::CONTENT_LENGTH, bytes.len())
            .body(body::full(bytes))
            .expect("valid response"))
    }

    /// Reads the object's bytes, renders them (waiting for a turn) and keeps the result.
    async fn render_fresh(
        &self,
        core: &Storage,
        actor: &Actor,
        bucket: &str,
        key: &str,
        t: &Transform,
        webp: bool,
    ) -> Result<Vec<u8>, ApiError> {
        // Read again as the actor: the version read is the one rendered and named in the cache.
        let (info, stream, _) = core.get(actor, bucket, key, None).await?;
        if info.size > MAX_SOURCE_BYTES {
            return Err(PixelError::TooLarge { pixels: false }.into());
        }
        let source: Vec<u8> = stream
            .try_fold(Vec::with_capacity(info.size as usize), |mut all, chunk| {
                all.extend_from_slice(&chunk);
                async move { Ok(all) }
            })
            .await
            .map_err(|e| {
                ApiError::Storage(super::core::StorageError::Io(std::io::Error::other(e)))
            })?;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (cache, t) = (self.cache.clone(), *t);
        let name = Cache::name(info.version, &t, webp);
        blocking(move || {
            let _turn = permit;
            let source_kind = ImageKind::sniff(&source).ok_or(PixelError::Unsupported)?;
            let out = if webp { ImageKind::Webp } else { source_kind };
            let rendered = pixels::render(&source, &t, Some(out))?;
            cache.put(&name, &rendered.bytes);
            Ok::<_, ApiError>(rendered.bytes)
        })
        .await?
    }
}

/// Runs blocking work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "image render task failed");
        ApiError::Refused {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalError",
            message: "Internal error".into(),
        }
    })
}

/// The headers every answer carries: the source's ETag, cache control and time (as Supabase's
/// renderer sends them), `Vary: Accept` (the format may follow it) and `X-Transformations`.
fn response_head(info: &ObjectInfo, t: &Transform) -> http::response::Builder {
    let mut res = Response::builder()
        .header(header::ETAG, &info.etag)
        .header(
            header::CACHE_CONTROL,
            info.cache_control.as_deref().unwrap_or("max-age=3600"),
        )
        .header(
            header::LAST_MODIFIED,
            info.updated_at
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string(),
        )
        .header(header::VARY, "Accept");
    let applied = t.to_string();
    if !applied.is_empty() {
        res = res.header("x-transformations", applied);
    }
    res
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.trim().trim_start_matches("W/") == etag || e.trim() == "*")
        })
}
