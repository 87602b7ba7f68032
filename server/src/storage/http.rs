//! The Supabase storage API at `/storage/v1`, as `@supabase/storage-js` calls it: buckets, object
//! upload (raw body or multipart/form-data), download (Range, ETag/304, `?download=`), info, exists,
//! list (v1 and v2), move, copy, remove, public URLs and signed download/upload URLs, over the storage
//! core as the caller's role. Errors are `{statusCode, error, message}`. Rejects unknown routes,
//! malformed JSON, bad or expired tokens; a private bucket or object the caller may not see is
//! "not found", never "forbidden".
//! Query strings are read by `http::query` (`form_urlencoded`) and multipart bodies by `multer` (see
//! `form`). The tus resumable-upload protocol (`tus`) stays hand-written: it is a handful of headers
//! over the storage core's multipart uploads, less code than fitting a tus server crate to that core.

use std::{collections::HashMap, sync::Arc};

use futures_util::TryStreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};

pub use super::api::ApiError;
use super::{
    api::{ApiResult, incoming_stream},
    backend::ByteStream,
    core::{
        Actor, BucketSpec, ByteRange, ListOrder, ObjectInfo, PutSpec, SortColumn, SortedList,
        Storage, StorageError,
    },
    form,
    render::{Renderer, params::Transform},
    route::{Reader, Route, route},
};
use crate::{
    http::{
        DoorFuture, RequestContext,
        body::{self, Body},
        headers_json,
    },
    jwt::Caller,
    state::SharedState,
};

/// What RFC 5987 `filename*` values escape: all but its attr-chars.
const ATTR_CHAR_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    // A repeated name: the last value wins.
    crate::http::query::pairs(req.uri().query().unwrap_or(""))
        .into_iter()
        .collect()
}

fn ok(v: Value) -> ApiResult {
    Ok(body::json(StatusCode::OK, &v))
}

/// The storage API's front door (mounted at `/storage/v1`): the shared state and the storage core.
pub struct StorageDoor {
    state: SharedState,
    core: Storage,
    renderer: Renderer,
}

impl StorageDoor {
    pub fn new(state: SharedState) -> StorageDoor {
        StorageDoor {
            core: super::core_of(&state),
            renderer: Renderer::new(&state.config.data_dir),
            state,
        }
    }
}

impl crate::http::Door for StorageDoor {
    fn handle(self: Arc<Self>, req: Request<Incoming>, ctx: RequestContext) -> DoorFuture {
        Box::pin(async move {
            match serve(&self, req, &ctx).await {
                Ok(r) => r,
                Err(e) => e.response(),
            }
        })
    }

    /// storage-js's shape: 413 EntityTooLarge, or 500 InternalError.
    fn reject(&self, why: &crate::http::Rejection, _request_id: &str) -> Response<Body> {
        ApiError::Rejected(why.clone()).response()
    }
}

async fn serve(door: &StorageDoor, req: Request<Incoming>, ctx: &RequestContext) -> ApiResult {
    let state = &door.state;
    let path = percent_encoding::percent_decode_str(&ctx.path)
        .decode_utf8()
        .map_err(|_| ApiError::BadRequest("path is not UTF-8".into()))?
        .into_owned();
    let route = route(req.method(), &path).ok_or(ApiError::NotFound)?;
    // Supabase's storage serves nobody without a key: `anon` needs the anon key. The routes that
    // carry their own proof (signed URLs) or need none (public objects) stay open.
    let open = matches!(
        route,
        Route::Public(..)
            | Route::GetSigned(..)
            | Route::PutSigned(..)
            | Route::Render(Reader::Public | Reader::Signed, ..)
    );
    if !open && matches!(crate::jwt::bearer_token(req.headers()), Ok(None)) {
        return Err(ApiError::InvalidJwt("Invalid Compact JWS".into()));
    }
    let caller = match state.verifier.caller(req.headers()) {
        Ok(c) => c,
        // Signed URLs carry their own token; a stale session header must not spoil them.
        Err(_)
            if matches!(
                route,
                Route::GetSigned(..) | Route::PutSigned(..) | Route::Render(Reader::Signed, ..)
            ) =>
        {
            Caller::anonymous()
        }
        Err(e) => return Err(ApiError::InvalidJwt(e.message().into())),
    };
    let actor = Actor {
        caller,
        method: req.method().to_string(),
        path: format!("/storage/v1{}", ctx.path),
        headers: headers_json(req.headers()),
    };
    let api = Api {
        core: door.core.clone(),
        state: state.clone(),
    };
    let limit = ctx.body_limit;
    let a = &actor;
    match route {
        Route::Tus(rest) => super::tus::handle(&api.core, a, req, &rest).await,
        Route::ListBuckets => ok(to_json(api.core.list_buckets(a).await?)),
        Route::GetBucket(id) => ok(to_json(api.core.get_bucket(a, &id).await?)),
        Route::CreateBucket => api.create_bucket(a, &json_body(req, limit).await?).await,
        Route::UpdateBucket(id) => {
            let spec = bucket_spec(&json_body(req, limit).await?)?;
            api.core.update_bucket(a, &id, &spec).await?;
            ok(json!({"message": "Successfully updated"}))
        }
        Route::DeleteBucket(id) => {
            api.core.delete_bucket(a, &id).await?;
            ok(json!({"message": "Successfully deleted"}))
        }
        Route::EmptyBucket(id) => {
            api.core.empty_bucket(a, &id).await?;
            // Supabase's words (it empties in the background); doska has emptied it already.
            ok(
                json!({"message": "Empty bucket has been queued. Completion may take up to an hour."}),
            )
        }
        Route::List(bucket) => api.list(a, &bucket, &json_body(req, limit).await?).await,
        Route::ListV2(bucket) => api.list_v2(a, &bucket, &json_body(req, limit).await?).await,
        Route::Move | Route::Copy => {
            let upsert = header_is_true(req.headers(), "x-upsert");
            let v = json_body(req, limit).await?;
            api.move_or_copy(a, route == Route::Move, upsert, &v).await
        }
        Route::Remove(bucket) => api.remove(a, &bucket, &json_body(req, limit).await?).await,
        Route::RemoveOne(bucket, key) => {
            let gone = api
                .core
                .delete(a, &bucket, std::slice::from_ref(&key))
                .await?;
            if gone.is_empty() {
                return Err(StorageError::NoSuchKey.into());
            }
            ok(json!({"message": "Successfully deleted"}))
        }
        Route::Info(bucket, key) => ok(info_json(&api.core.head(a, &bucket, &key).await?)),
        Route::Get(bucket, key) => api.download(a, &req, &bucket, &key).await,
        Route::Public(bucket, key) => {
            if !api.is_public(&bucket).await? {
                return Err(StorageError::NoSuchKey.into());
            }
            let svc = Actor::service(a.method.as_str(), &a.path);
            api.download(&svc, &req, &bucket, &key).await
        }
        Route::Sign(bucket, key) => {
            let v = json_body(req, limit).await?;
            let secs = expires_in(&v)?;
            // With a transform, the URL renders the image, its transformations fixed by the token.
            let t = Transform::from_json(&v["transform"])?;
            api.core.head(a, &bucket, &key).await?;
            let grant = match t == Transform::default() {
                true => Grant::Download,
                false => Grant::Render(t),
            };
            let url = api.signed_url(&bucket, &key, secs, grant);
            ok(json!({ "signedURL": url }))
        }
        Route::Render(reader, bucket, key) => {
            let (svc, q) = (Actor::service(a.method.as_str(), &a.path), query(&req));
            let (reader, t) = match reader {
                Reader::Caller => (a, Transform::from_query(pairs(&q))?),
                Reader::Public => {
                    if !api.is_public(&bucket).await? {
                        return Err(StorageError::NoSuchKey.into());
                    }
                    (&svc, Transform::from_query(pairs(&q))?)
                }
                Reader::Signed => {
                    let claims = api.check_token(&req, &bucket, &key, false)?;
                    let t = claims["transformations"].as_str().unwrap_or("");
                    (&svc, Transform::from_token(t)?)
                }
            };
            let mut res = (door.renderer)
                .render(&api.core, reader, req.headers(), &bucket, &key, &t)
                .await?;
            if let Some(name) = q.get("download") {
                res.headers_mut()
                    .insert(header::CONTENT_DISPOSITION, attachment(name, &key));
            }
            Ok(res)
        }
        Route::SignMany(bucket) => {
            api.sign_many(a, &bucket, &json_body(req, limit).await?)
                .await
        }
        Route::GetSigned(bucket, key) => {
            api.check_token(&req, &bucket, &key, false)?;
            let svc = Actor::service(a.method.as_str(), &a.path);
            api.download(&svc, &req, &bucket, &key).await
        }
        Route::SignUpload(bucket, key) => {
            let upsert = header_is_true(req.headers(), "x-upsert");
            api.sign_upload(a, &bucket, &key, upsert).await
        }
        Route::PutSigned(bucket, key) => api.put_signed(a, req, &bucket, &key).await,
        Route::Upload(bucket, key, is_update) => {
            let upsert = is_update || header_is_true(req.headers(), "x-upsert");
            let info = api.upload(a, req, &bucket, &key, upsert).await?;
            ok(json!({"Id": info.id, "Key": format!("{bucket}/{key}")}))
        }
    }
}

fn to_json<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn info_json(o: &ObjectInfo) -> Value {
    json!({
        "id": o.id, "name": o.name, "version": o.version.to_string(),
        "bucket_id": o.bucket_id, "size": o.size, "content_type": o.content_type,
        "cache_control": o.cache_control, "etag": o.etag,
        // Supabase answers `{}` for an object uploaded without metadata, never null.
        "metadata": o.user_metadata.clone().filter(|m| !m.is_null()).unwrap_or_else(|| json!({})),
        "last_modified": o.updated_at, "created_at": o.created_at,
    })
}

fn header_is_true(h: &HeaderMap, name: &str) -> bool {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn expires_in(v: &Value) -> Result<i64, ApiError> {
    v["expiresIn"]
        .as_i64()
        .filter(|s| *s > 0)
        .ok_or_else(|| ApiError::BadRequest("expiresIn must be a positive number".into()))
}

async fn json_body(req: Request<Incoming>, limit: u64) -> Result<Value, ApiError> {
    let bytes = body::read_limited(req.into_body(), limit.min(1024 * 1024))
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

pub(super) fn bucket_spec(v: &Value) -> Result<BucketSpec, ApiError> {
    let limit = match v.get("file_size_limit") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => Some(n.as_i64().filter(|n| *n > 0)),
        // As for a number, 0 clears the limit; a size past i64 is refused, not wrapped negative.
        Some(Value::String(s)) if s.trim() == "0" => Some(None),
        Some(Value::String(s)) => Some(Some(size_limit(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "file_size_limit `{s}`: a number of bytes, or a size such as `20mb` (b, kb, mb, gb)"
            ))
        })?)),
        Some(_) => return Err(ApiError::BadRequest("file_size_limit".into())),
    };
    let mimes = match v.get("allowed_mime_types") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Array(a)) => Some(Some(
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect(),
        )),
        Some(_) => return Err(ApiError::BadRequest("allowed_mime_types".into())),
    };
    Ok(BucketSpec {
        public: v.get("public").and_then(Value::as_bool),
        file_size_limit: limit,
        allowed_mime_types: mimes,
    })
}

/// A bucket's `file_size_limit` given as text, read as Supabase's storage server reads it: a number
/// with an optional unit `b`, `kb`, `mb` or `gb` (any case, space allowed), decimal — `"20mb"` is
/// 20,000,000 bytes. The binary units `kib`, `mib`, `gib` are accepted too, as what they say.
fn size_limit(s: &str) -> Option<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    // Whole numbers in integers (exact up to i64::MAX); fractions ("1.5mb") in floats.
    if !num.contains('.') {
        let bytes = num.parse::<i64>().ok()?.checked_mul(mult as i64)?;
        return (bytes >= 1).then_some(bytes);
    }
    let n: f64 = num.parse().ok()?;
    let bytes = (n * mult).round();
    (bytes >= 1.0 && bytes < i64::MAX as f64).then_some(bytes as i64)
}

/// list-v2's `key` of an entry: its path segment at the level the prefix lists, as Supabase's
/// `search_v2` makes it (`split_part(name, '/', levels)`); `name` is the full path.
fn v2_key<'a>(prefix: &str, name: &'a str) -> &'a str {
    let level = if prefix.is_empty() {
        0
    } else {
        prefix.split('/').count() - 1
    };
    name.split('/').nth(level).unwrap_or_default()
}

fn object_json(o: &ObjectInfo) -> Value {
    json!({
        "id": o.id, "name": o.name, "bucket_id": o.bucket_id, "owner": o.owner_id,
        "owner_id": o.owner_id, "version": o.version.to_string(),
        "created_at": o.created_at, "updated_at": o.updated_at,
        "last_accessed_at": o.last_accessed_at, "metadata": o.metadata,
        "user_metadata": o.user_metadata,
    })
}

fn stream_body(s: ByteStream) -> Body {
    http_body_util::StreamBody::new(sync_wrapper::SyncStream::new(s.map_ok(Frame::data))).boxed()
}

struct Api {
    core: Storage,
    state: SharedState,
}

/// What a signed URL lets its holder do.
enum Grant {
    Download,
    /// Upload once, owned by `owner` (the signer), overwriting when `upsert`.
    Upload {
        owner: Option<Value>,
        upsert: bool,
    },
    /// Download the image rendered as the token fixes it.
    Render(Transform),
}

impl Api {
    async fn create_bucket(&self, actor: &Actor, v: &Value) -> ApiResult {
        let id = v["id"]
            .as_str()
            .or(v["name"].as_str())
            .ok_or_else(|| ApiError::BadRequest("body needs `name`".into()))?;
        let name = v["name"].as_str().unwrap_or(id);
        let b = self
            .core
            .create_bucket(actor, id, name, &bucket_spec(v)?)
            .await?;
        ok(json!({"name": b.name}))
    }

    async fn move_or_copy(
        &self,
        actor: &Actor,
        is_move: bool,
        upsert: bool,
        v: &Value,
    ) -> ApiResult {
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| ApiError::BadRequest(format!("body needs `{k}`")))
        };
        let bucket = field("bucketId")?;
        let from = field("sourceKey")?;
        let to = field("destinationKey")?;
        let to_bucket = v["destinationBucket"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| bucket.clone());
        if is_move {
            self.core
                .rename(actor, &bucket, &from, &to_bucket, &to)
                .await?;
            return ok(json!({"message": "Successfully moved"}));
        }
        let src = self.core.head(actor, &bucket, &from).await?;
        let spec = PutSpec {
            bucket: to_bucket.clone(),
            key: to.clone(),
            // As in Supabase: a copy overwrites only when asked with `x-upsert`.
            upsert,
            content_type: src.content_type.clone(),
            cache_control: src.cache_control.clone(),
            user_metadata: src.user_metadata.clone(),
            declared_len: Some(src.size),
            extra: None,
        };
        let info = self.core.copy(actor, &bucket, &from, &spec).await?;
        ok(json!({"Id": info.id, "Key": format!("{to_bucket}/{to}")}))
    }

    async fn remove(&self, actor: &Actor, bucket: &str, v: &Value) -> ApiResult {
        let keys: Vec<String> = v["prefixes"]
            .as_array()
            .ok_or_else(|| ApiError::BadRequest("body needs `prefixes`".into()))?
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        let gone = self.core.delete(actor, bucket, &keys).await?;
        ok(Value::Array(gone.iter().map(object_json).collect()))
    }

    async fn sign_many(&self, actor: &Actor, bucket: &str, v: &Value) -> ApiResult {
        let secs = expires_in(v)?;
        let paths = v["paths"]
            .as_array()
            .ok_or_else(|| ApiError::BadRequest("body needs `paths`".into()))?;
        let mut out = Vec::new();
        for p in paths.iter().filter_map(Value::as_str) {
            out.push(match self.core.head(actor, bucket, p).await {
                Ok(_) => json!({"error": null, "path": p,
                    "signedURL": self.signed_url(bucket, p, secs, Grant::Download)}),
                Err(StorageError::NoSuchKey) => {
                    json!({"error": "Either the object does not exist or you do not have access to it", "path": p, "signedURL": null})
                }
                Err(e) => return Err(e.into()),
            });
        }
        ok(Value::Array(out))
    }

    /// The caller must be allowed to upload here now; the URL then lets anyone do it once.
    async fn sign_upload(&self, actor: &Actor, bucket: &str, key: &str, upsert: bool) -> ApiResult {
        let spec = PutSpec {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upsert,
            content_type: "application/octet-stream".into(),
            cache_control: None,
            user_metadata: None,
            declared_len: None,
            extra: None,
        };
        self.core.check_write(actor, &spec).await?;
        let owner = actor.caller.claims.get("sub").cloned();
        let url = self.signed_url(bucket, key, 2 * 3600, Grant::Upload { owner, upsert });
        let token = url.split("token=").nth(1).unwrap_or_default().to_string();
        ok(json!({"url": url, "token": token}))
    }

    /// An upload through a signed upload URL: as the service, owned by whoever signed it.
    async fn put_signed(
        &self,
        actor: &Actor,
        req: Request<Incoming>,
        bucket: &str,
        key: &str,
    ) -> ApiResult {
        let claims = self.check_token(&req, bucket, key, true)?;
        let mut svc = Actor::service(actor.method.as_str(), &actor.path);
        if let Some(sub) = claims.get("owner").filter(|o| o.is_string()) {
            svc.caller.claims = svc.caller.claims.with("sub", sub.clone());
        }
        let upsert = claims["upsert"].as_bool().unwrap_or(false);
        let info = self.upload(&svc, req, bucket, key, upsert).await?;
        ok(json!({"Id": info.id, "Key": format!("{bucket}/{key}")}))
    }

    async fn is_public(&self, bucket: &str) -> Result<bool, ApiError> {
        let client = self
            .state
            .admin
            .get()
            .await
            .map_err(|e| StorageError::Db(crate::db::caller::TxError::Pool(e)))?;
        let row = client
            .query_opt("select public from storage.doska_bucket($1)", &[&bucket])
            .await
            .map_err(StorageError::from)?;
        Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
    }

    /// A signed URL for `grant` on `bucket/key`, for `secs` seconds.
    fn signed_url(&self, bucket: &str, key: &str, secs: i64, grant: Grant) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({"url": format!("{bucket}/{key}"), "iat": now, "exp": now + secs});
        let path = match grant {
            Grant::Download => "object/sign",
            Grant::Upload { owner, upsert } => {
                claims["owner"] = owner.unwrap_or(Value::Null);
                claims["upsert"] = json!(upsert);
                "object/upload/sign"
            }
            Grant::Render(t) => {
                claims["transformations"] = json!(t.to_token());
                "render/image/sign"
            }
        };
        let token = crate::jwt::sign(&self.state.jwt_secret, &claims);
        // Unencoded, as Supabase answers: storage-js runs the whole URL through `encodeURI`.
        format!("/{path}/{bucket}/{key}?token={token}")
    }

    /// A signed URL's token: ours, unexpired, for exactly this object (and an upload token for uploads).
    fn check_token(
        &self,
        req: &Request<Incoming>,
        bucket: &str,
        key: &str,
        upload: bool,
    ) -> Result<Value, ApiError> {
        let q = query(req);
        let token = q
            .get("token")
            .ok_or_else(|| ApiError::BadRequest("token is missing".into()))?;
        let claims = self
            .state
            .verifier
            .verify(token)
            .map_err(|e| ApiError::InvalidJwt(e.message().into()))?;
        if claims["url"].as_str() != Some(&format!("{bucket}/{key}"))
            || claims.get("upsert").is_some() != upload
        {
            return Err(ApiError::InvalidJwt(
                "the token is not for this object".into(),
            ));
        }
        Ok(claims)
    }

    async fn upload(
        &self,
        actor: &Actor,
        req: Request<Incoming>,
        bucket: &str,
        key: &str,
        upsert: bool,
    ) -> Result<ObjectInfo, ApiError> {
        let h = req.headers().clone();
        let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_type = header("content-type");
        let declared_len = header("content-length").and_then(|l| l.parse::<u64>().ok());
        let incoming = incoming_stream(req.into_body());
        let (content_type, cache_control, metadata, body) =
            match content_type.as_deref().and_then(form::boundary) {
                Some(boundary) => {
                    let f = form::read(incoming, &boundary)
                        .await
                        .map_err(ApiError::Form)?;
                    let meta = f
                        .fields
                        .get("metadata")
                        .and_then(|m| serde_json::from_str::<Value>(m).ok());
                    (
                        f.content_type
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        f.fields.get("cacheControl").map(|c| format!("max-age={c}")),
                        meta,
                        f.file,
                    )
                }
                None => {
                    let meta = header("x-metadata").and_then(|m| {
                        let raw = base64::Engine::decode(
                            &base64::engine::general_purpose::STANDARD,
                            m.trim(),
                        )
                        .ok()?;
                        serde_json::from_slice::<Value>(&raw).ok()
                    });
                    (
                        content_type.unwrap_or_else(|| "application/octet-stream".into()),
                        header("cache-control"),
                        meta,
                        incoming,
                    )
                }
            };
        let spec = PutSpec {
            bucket: bucket.into(),
            key: key.into(),
            upsert,
            content_type,
            cache_control,
            user_metadata: metadata,
            declared_len: if body_is_form(&h) { None } else { declared_len },
            extra: None,
        };
        Ok(self.core.put(actor, &spec, body).await?)
    }

    async fn download(
        &self,
        actor: &Actor,
        req: &Request<Incoming>,
        bucket: &str,
        key: &str,
    ) -> ApiResult {
        let h = req.headers();
        let range = h
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(ByteRange::parse);
        let info = self.core.head(actor, bucket, key).await?;
        let etag_matches = h
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|e| e.trim().trim_start_matches("W/") == info.etag || e.trim() == "*")
            });
        let mut res = Response::builder()
            .header(header::ETAG, &info.etag)
            .header(header::CONTENT_TYPE, &info.content_type)
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
            .header(header::ACCEPT_RANGES, "bytes");
        if let Some(name) = query(req).get("download") {
            res = res.header(header::CONTENT_DISPOSITION, attachment(name, key));
        }
        if etag_matches {
            return Ok(res
                .status(StatusCode::NOT_MODIFIED)
                .body(body::empty())
                .expect("valid response"));
        }
        if req.method() == Method::HEAD {
            return Ok(res
                .header(header::CONTENT_LENGTH, info.size)
                .body(body::empty())
                .expect("valid response"));
        }
        let (info, stream, span) = self.core.get(actor, bucket, key, range).await?;
        let res = match span {
            Some((start, len)) => res
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_LENGTH, len)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{}", start + len - 1, info.size),
                ),
            None => res.header(header::CONTENT_LENGTH, info.size),
        };
        Ok(res.body(stream_body(stream)).expect("valid response"))
    }

    async fn list(&self, actor: &Actor, bucket: &str, v: &Value) -> ApiResult {
        // Supabase's list: the folder `prefix` (without a trailing slash), its direct files and
        // subfolders, `search` filtering names by prefix, `limit`/`offset` paging, sorted by name.
        let folder = v["prefix"].as_str().unwrap_or("").trim_matches('/');
        let prefix = if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        };
        let search = v["search"].as_str().unwrap_or("");
        let limit = v["limit"].as_u64().unwrap_or(100).clamp(1, 1000) as usize;
        let offset = v["offset"].as_u64().unwrap_or(0) as usize;
        let full = format!("{prefix}{search}");
        let page = self
            .core
            .list(actor, bucket, &full, Some("/"), None, offset + limit)
            .await?;
        let mut entries: Vec<(String, Value)> = page
            .prefixes
            .iter()
            .map(|p| {
                let name = p[prefix.len()..].trim_end_matches('/').to_string();
                (
                    name.clone(),
                    json!({"name": name, "id": null, "updated_at": null, "created_at": null,
                           "last_accessed_at": null, "metadata": null}),
                )
            })
            .chain(page.objects.iter().map(|o| {
                let name = o.name[prefix.len()..].to_string();
                (
                    name.clone(),
                    json!({"name": name, "id": o.id, "updated_at": o.updated_at,
                           "created_at": o.created_at, "last_accessed_at": o.last_accessed_at,
                           "metadata": o.metadata}),
                )
            }))
            .collect();
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if v["sortBy"]["order"].as_str() == Some("desc") {
            entries.reverse();
        }
        ok(Value::Array(
            entries
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(_, v)| v)
                .collect(),
        ))
    }

    async fn list_v2(&self, actor: &Actor, bucket: &str, v: &Value) -> ApiResult {
        let prefix = v["prefix"].as_str().unwrap_or("");
        let limit = v["limit"].as_u64().unwrap_or(1000).clamp(1, 1000) as usize;
        let delimiter = v["with_delimiter"]
            .as_bool()
            .unwrap_or(false)
            .then_some("/");
        let cursor = v["cursor"].as_str().and_then(|c| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        });
        let order = ListOrder {
            column: match v["sortBy"]["column"].as_str() {
                Some("created_at") => SortColumn::CreatedAt,
                Some("updated_at") => SortColumn::UpdatedAt,
                _ => SortColumn::Name,
            },
            descending: v["sortBy"]["order"]
                .as_str()
                .is_some_and(|o| o.eq_ignore_ascii_case("desc")),
        };
        let page = if order.column == SortColumn::Name && !order.descending {
            self.core
                .list(actor, bucket, prefix, delimiter, cursor.as_deref(), limit)
                .await?
        } else {
            self.core
                .list_sorted(
                    actor,
                    bucket,
                    &SortedList {
                        prefix,
                        delimited: delimiter.is_some(),
                        order,
                        cursor: cursor.as_deref(),
                        max: limit,
                    },
                )
                .await?
        };
        let folders: Vec<Value> = page
            .prefixes
            .iter()
            .map(|p| json!({"key": v2_key(prefix, p), "name": p}))
            .collect();
        let objects: Vec<Value> = page
            .objects
            .iter()
            .map(|o| {
                json!({"id": o.id, "key": v2_key(prefix, &o.name), "name": o.name,
                       "updated_at": o.updated_at, "created_at": o.created_at,
                       "last_accessed_at": o.last_accessed_at, "metadata": o.metadata})
            })
            .collect();
        let next = page.truncated.then(|| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                page.last.clone().unwrap_or_default(),
            )
        });
        ok(
            json!({"hasNext": page.truncated, "nextCursor": next, "folders": folders, "objects": objects}),
        )
    }
}

/// `Content-Disposition` for `?download=name` (empty: the key's last segment).
fn attachment(name: &str, key: &str) -> http::HeaderValue {
    let name = match name {
        "" => key.rsplit('/').next().unwrap_or(key),
        name => name,
    };
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR_CHAR_ESCAPES);
    http::HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
        .expect("percent-encoded text is a valid header value")
}

fn pairs(q: &HashMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    q.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

fn body_is_form(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(form::boundary)
        .is_some()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
