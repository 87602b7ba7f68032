//! The storage core both front doors share: buckets and objects as rows in `storage.*`, read and
//! written as the caller's role so row-level security decides every operation, and bytes in a
//! [`Backend`]. A write is checked in one short transaction (a probe, rolled back) before its body
//! streams, and committed in a second short one after the bytes are durable; no transaction or pooled
//! connection is held while bytes flow. A small body, read whole first, takes one transaction that
//! runs the row statement, waits while the bytes are made durable, then commits. A new version is visible only once its row commits, and the
//! version it replaced is removed only after that, so a denied or crashed write never destroys what
//! was there. Rejects empty or NUL-bearing keys, unknown buckets, sizes and MIME types the bucket
//! refuses, and whatever the policies deny.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio_postgres::{
    Row,
    types::{ToSql, Type},
};
use uuid::Uuid;

mod multipart;

pub use multipart::TusState;

use super::backend::{Backend, BlobKey, ByteStream, WriteError};
use crate::{
    db::caller::{RequestInfo, RequestTx, TxError},
    jwt::Caller,
};

#[derive(Debug)]
pub enum StorageError {
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    /// The key exists and the write did not ask to overwrite it.
    KeyExists,
    BucketExists,
    BucketNotEmpty,
    /// Row-level security (or a missing grant) refused the operation.
    Denied,
    TooLarge {
        limit: u64,
    },
    MimeNotAllowed(String),
    InvalidKey(String),
    InvalidBucketName(String),
    /// A multipart completion named a part that was not uploaded, or with another ETag.
    InvalidPart(String),
    InvalidPartOrder,
    InvalidRange,
    /// The row changed under a write in a way it cannot resolve (deleted and recreated meanwhile).
    Conflict,
    /// The client's body failed mid-way.
    Body(String),
    Db(TxError),
    Io(std::io::Error),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NoSuchBucket => f.write_str("Bucket not found"),
            StorageError::NoSuchKey => f.write_str("Object not found"),
            StorageError::NoSuchUpload => f.write_str("Upload not found"),
            StorageError::KeyExists => f.write_str("The resource already exists"),
            StorageError::BucketExists => f.write_str("The bucket already exists"),
            StorageError::BucketNotEmpty => {
                f.write_str("The bucket you tried to delete is not empty")
            }
            StorageError::Denied => f.write_str("new row violates row-level security policy"),
            StorageError::TooLarge { limit } => {
                write!(
                    f,
                    "The object exceeded the maximum allowed size ({limit} bytes)"
                )
            }
            StorageError::MimeNotAllowed(m) => write!(f, "mime type {m} is not supported"),
            StorageError::InvalidKey(k) => write!(f, "Invalid key: {k}"),
            StorageError::InvalidBucketName(b) => write!(f, "Invalid bucket name: {b}"),
            StorageError::InvalidPart(p) => write!(f, "Invalid part: {p}"),
            StorageError::InvalidPartOrder => {
                f.write_str("Parts must be listed in ascending order")
            }
            StorageError::InvalidRange => f.write_str("The requested range is not satisfiable"),
            StorageError::Conflict => f.write_str("The object changed during the write; retry"),
            StorageError::Body(e) => write!(f, "reading the request body failed: {e}"),
            StorageError::Db(e) => write!(f, "{e}"),
            StorageError::Io(e) => write!(f, "storage I/O failed: {e}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<TxError> for StorageError {
    fn from(e: TxError) -> Self {
        match &e {
            TxError::Db(db) => from_db(db).unwrap_or(StorageError::Db(e)),
            TxError::Pool(_) => StorageError::Db(e),
        }
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        from_db(&e).unwrap_or(StorageError::Db(TxError::Db(e)))
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError::Io(e)
    }
}

/// SQLSTATEs with a storage meaning; anything else stays a database error (a 500).
fn from_db(e: &tokio_postgres::Error) -> Option<StorageError> {
    let code = e.code()?;
    Some(match code.code() {
        "42501" => StorageError::Denied, // insufficient_privilege, RLS WITH CHECK
        "23505" => StorageError::KeyExists, // unique_violation
        "23503" => StorageError::NoSuchBucket, // foreign_key_violation (bucket gone)
        "22P02" => StorageError::InvalidKey("malformed value".into()), // invalid_text_representation
        "P0002" => StorageError::NoSuchUpload, // storage.doska_adopt_upload: upload gone or foreign
        _ => return None,
    })
}

/// Who is asking, and what PostgreSQL code may read about the request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub caller: Caller,
    pub method: String,
    pub path: String,
    pub headers: Value,
}

impl Actor {
    /// The operator (S3 keys from config): service_role, which bypasses RLS.
    pub fn service(method: &str, path: &str) -> Actor {
        Actor {
            caller: Caller {
                role: "service_role".into(),
                claims: json!({"role": "service_role"}).into(),
                token: None,
            },
            method: method.into(),
            path: path.into(),
            headers: json!({}),
        }
    }

    fn sub(&self) -> Option<String> {
        self.caller
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    fn owner(&self) -> Option<Uuid> {
        self.sub().and_then(|s| Uuid::parse_str(&s).ok())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Bucket {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub public: bool,
    pub file_size_limit: Option<i64>,
    pub allowed_mime_types: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Bucket {
    const COLUMNS: &str = "id, name, coalesce(owner_id, owner::text, '') as owner, public, \
        file_size_limit, allowed_mime_types, coalesce(created_at, now()) as created_at, \
        coalesce(updated_at, now()) as updated_at";

    fn from_row(r: &Row) -> Bucket {
        Bucket {
            id: r.get("id"),
            name: r.get("name"),
            owner: r.get("owner"),
            public: r.get("public"),
            file_size_limit: r.get("file_size_limit"),
            allowed_mime_types: r.get("allowed_mime_types"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        }
    }
}

/// What a bucket creation or update sets.
#[derive(Debug, Clone, Default)]
pub struct BucketSpec {
    pub public: Option<bool>,
    /// `Some(None)` clears the limit.
    pub file_size_limit: Option<Option<i64>>,
    pub allowed_mime_types: Option<Option<Vec<String>>>,
}

/// An object row's columns as [`ObjectInfo::from_row`] reads them (a macro, so the statements below
/// can be `concat!`ed constants).
macro_rules! object_columns {
    () => {
        "id, bucket_id, name, version, metadata, user_metadata, owner_id, \
        coalesce(created_at, now()) as created_at, coalesce(updated_at, now()) as updated_at, \
        coalesce(last_accessed_at, now()) as last_accessed_at"
    };
}

/// The part layout of the `storage.objects` row in scope (unaliased, as `objects`): `[[part id, size],
/// …]` in order for an object kept as its multipart upload's parts, null for one blob.
macro_rules! layout_column {
    () => {
        "storage.doska_layout(objects.id, objects.version)"
    };
}

#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub id: Uuid,
    pub bucket_id: String,
    pub name: String,
    pub version: Uuid,
    pub size: u64,
    /// Quoted, as in the ETag header: `"<md5 hex>"`, or `"<hex>-<parts>"` after a multipart upload.
    pub etag: String,
    pub content_type: String,
    pub cache_control: Option<String>,
    pub metadata: Value,
    pub user_metadata: Option<Value>,
    pub owner_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_accessed_at: DateTime<Utc>,
    /// The part blobs (id, size) of an object kept as its multipart upload's parts, when the row was
    /// read with its layout; `None` for an object stored as one blob (or read without the layout).
    pub parts: Option<Vec<(Uuid, u64)>>,
}

/// A layout column's value: `[[part id, size], …]`.
fn parse_layout(v: Option<Value>) -> Option<Vec<(Uuid, u64)>> {
    v?.as_array()?
        .iter()
        .map(|p| {
            Some((
                Uuid::parse_str(p.get(0)?.as_str()?).ok()?,
                p.get(1)?.as_u64()?,
            ))
        })
        .collect()
}

impl ObjectInfo {
    /// `None` for rows without bytes (inserted by hand, without a version).
    fn from_row(r: &Row) -> Option<ObjectInfo> {
        let version: Option<String> = r.get("version");
        let version = Uuid::parse_str(version.as_deref()?).ok()?;
        let metadata: Option<Value> = r.get("metadata");
        let metadata = metadata.unwrap_or_else(|| json!({}));
        let size = metadata.get("size").and_then(Value::as_u64).unwrap_or(0);
        Some(ObjectInfo {
            id: r.get("id"),
            bucket_id: r.get("bucket_id"),
            name: r.get("name"),
            version,
            size,
            etag: metadata
                .get("eTag")
                .and_then(Value::as_str)
                .unwrap_or("\"\"")
                .to_string(),
            content_type: metadata
                .get("mimetype")
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream")
                .to_string(),
            cache_control: metadata
                .get("cacheControl")
                .and_then(Value::as_str)
                .map(str::to_string),
            user_metadata: r.get("user_metadata"),
            owner_id: r.get("owner_id"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            last_accessed_at: r.get("last_accessed_at"),
            parts: parse_layout(r.try_get("parts").ok().flatten()),
            metadata,
        })
    }

    pub fn blob(&self) -> BlobKey {
        BlobKey::Object {
            id: self.id,
            version: self.version,
        }
    }

    /// Every blob holding this version's bytes: its part blobs, or its one blob.
    pub fn blobs(&self) -> Vec<BlobKey> {
        match &self.parts {
            Some(parts) => parts
                .iter()
                .map(|(id, _)| BlobKey::Part { id: *id })
                .collect(),
            None => vec![self.blob()],
        }
    }
}

/// An object write: where, whether it may replace, and its content headers.
#[derive(Debug, Clone)]
pub struct PutSpec {
    pub bucket: String,
    pub key: String,
    pub upsert: bool,
    pub content_type: String,
    pub cache_control: Option<String>,
    pub user_metadata: Option<Value>,
    /// The body length when the client declared it, so an oversized upload is refused before it streams.
    pub declared_len: Option<u64>,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned: where the next page starts after.
    pub last: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub bucket_id: String,
    pub key: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Part {
    pub number: i32,
    pub size: u64,
    pub etag: String,
    pub created_at: DateTime<Utc>,
}

/// A requested byte range, as HTTP and S3 send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-` or `bytes=first-last` (inclusive).
    From { first: u64, last: Option<u64> },
    /// `bytes=-len`: the last `len` bytes.
    Suffix { len: u64 },
}

impl ByteRange {
    /// Parses one `bytes=` range (several ranges are not supported, as in S3).
    ///
    /// ```
    /// use doska::storage::core::ByteRange;
    /// assert_eq!(ByteRange::parse("bytes=0-9"), Some(ByteRange::From { first: 0, last: Some(9) }));
    /// assert_eq!(ByteRange::parse("bytes=5-"), Some(ByteRange::From { first: 5, last: None }));
    /// assert_eq!(ByteRange::parse("bytes=-3"), Some(ByteRange::Suffix { len: 3 }));
    /// assert_eq!(ByteRange::parse("bytes=1-2,4-5"), None);
    /// assert_eq!(ByteRange::parse("bytes=9-1"), None);
    /// ```
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            return Some(ByteRange::Suffix {
                len: b.parse().ok()?,
            });
        }
        let first: u64 = a.parse().ok()?;
        let last = if b.is_empty() {
            None
        } else {
            Some(b.parse().ok()?)
        };
        if last.is_some_and(|l| l < first) {
            return None;
        }
        Some(ByteRange::From { first, last })
    }

    /// `(start, len)` within an object of `size` bytes; `InvalidRange` when it starts past the end.
    pub fn resolve(self, size: u64) -> Result<(u64, u64), StorageError> {
        match self {
            ByteRange::From { first, last } => {
                if first >= size {
                    return Err(StorageError::InvalidRange);
                }
                let last = last.unwrap_or(u64::MAX).min(size - 1);
                Ok((first, last - first + 1))
            }
            ByteRange::Suffix { len } => {
                if len == 0 || size == 0 {
                    return Err(StorageError::InvalidRange);
                }
                let len = len.min(size);
                Ok((size - len, len))
            }
        }
    }
}

/// Checks an object key: S3's 1,024 bytes, no NUL (PostgreSQL text cannot hold it), not empty.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() || key.len() > 1024 || key.contains('\0') {
        return Err(StorageError::InvalidKey(key.chars().take(64).collect()));
    }
    Ok(())
}

/// Checks a bucket id: 1 to 100 characters of letters, digits and `-_.` (S3's and Supabase's common
/// ground; a bucket id appears in URLs).
pub fn check_bucket_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidBucketName(
            name.chars().take(64).collect(),
        ))
    }
}

/// Whether `mime` matches a bucket's allowed list (`image/*` style wildcards as in Supabase).
pub fn mime_allowed(allowed: &[String], mime: &str) -> bool {
    let base = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        a == base
            || a == "*/*"
            || a.strip_suffix("/*")
                .is_some_and(|t| base.split('/').next() == Some(t))
    })
}

/// The ETag of a multipart object: MD5 of the parts' binary MD5s, then `-<count>`.
pub fn multipart_etag(part_etags: &[String]) -> String {
    let mut h = Md5::new();
    for e in part_etags {
        if let Ok(b) = hex::decode(e.trim_matches('"')) {
            h.update(b);
        }
    }
    format!("\"{}-{}\"", hex::encode(h.finalize()), part_etags.len())
}

fn object_metadata(size: u64, etag: &str, content_type: &str, cache: &Option<String>) -> Value {
    json!({
        "eTag": etag,
        "size": size,
        "mimetype": content_type,
        "cacheControl": cache.clone().unwrap_or_else(|| "max-age=3600".into()),
        "lastModified": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "contentLength": size,
        "httpStatusCode": 200,
    })
}

const LIMITS_SQL: &str = "select file_size_limit, allowed_mime_types from storage.doska_bucket($1)";

/// The row statement of an overwriting write; `$guard` is the commit's extra condition.
macro_rules! upsert_sql {
    ($guard:literal) => {
        concat!(
            "with old as (
    select id, version, ",
            layout_column!(),
            " as parts from storage.objects where bucket_id = $2 and name = $3)
  insert into storage.objects as o (id, bucket_id, name, owner, owner_id, version, metadata, user_metadata)
  values ($1, $2, $3, $4, $5, $6, $7, $8)
  on conflict (bucket_id, name) do update set version = excluded.version,
    metadata = excluded.metadata, user_metadata = excluded.user_metadata, owner = excluded.owner,
    owner_id = excluded.owner_id, updated_at = now(), last_accessed_at = now()",
            $guard,
            "
  returning ",
            object_columns!(),
            ", (select version from old) as old_version, (select parts from old) as old_parts"
        )
    };
}

/// The row statement of an overwrite (`x-upsert`, PUT, S3 PUT) as the check runs it:
/// `doska policies test` runs it too.
pub const UPSERT_SQL: &str = upsert_sql!("");
/// The same at commit: the row it replaces must be the one the check saw (same id), else nothing is
/// written and no row returns.
const UPSERT_COMMIT_SQL: &str = upsert_sql!(" where o.id = $1");
/// The row statement of an upload that must not overwrite: `doska policies test` runs it too.
pub const INSERT_SQL: &str = concat!(
    "insert into storage.objects as o
    (id, bucket_id, name, owner, owner_id, version, metadata, user_metadata)
  values ($1, $2, $3, $4, $5, $6, $7, $8)
  returning ",
    object_columns!(),
    ", null::text as old_version, null::jsonb as old_parts"
);
const HEAD_SQL: &str = concat!(
    "select ",
    object_columns!(),
    ", ",
    layout_column!(),
    " as parts from storage.objects where bucket_id = $1 and name = $2"
);
/// What a deleting statement returns: the row and its layout (to remove its blobs).
const GONE_COLUMNS: &str = concat!(object_columns!(), ", ", layout_column!(), " as parts");
const LIST_SQL: &str = concat!(
    "select ",
    object_columns!(),
    " from storage.objects where bucket_id = $1 and starts_with(name, $2)
         and name > $3 order by name limit $4"
);

/// Applies a bucket's limits (a row of `LIMITS_SQL`; none: no such bucket) to a write of `len` bytes
/// (when known) and `spec`'s MIME type; returns the size limit to enforce while the bytes stream.
fn bucket_limits(
    rows: &[Row],
    spec: &PutSpec,
    len: Option<u64>,
) -> Result<Option<u64>, StorageError> {
    let limits = rows.first().ok_or(StorageError::NoSuchBucket)?;
    let file_size_limit: Option<i64> = limits.get(0);
    let allowed: Option<Vec<String>> = limits.get(1);
    let limit = file_size_limit.filter(|l| *l > 0).map(|l| l as u64);
    if let (Some(limit), Some(len)) = (limit, len)
        && len > limit
    {
        return Err(StorageError::TooLarge { limit });
    }
    if let Some(allowed) = &allowed
        && !allowed.is_empty()
        && !mime_allowed(allowed, &spec.content_type)
    {
        return Err(StorageError::MimeNotAllowed(spec.content_type.clone()));
    }
    Ok(limit)
}

/// Bodies whose declared length is at most this many bytes are read whole before anything else
/// happens, and written in one transaction instead of two (see [`Storage::put`]).
pub const SMALL_PUT: u64 = 64 << 10;

/// A body read up to a bound: whole, or (longer than the bound) the bytes read so far put back in
/// front of the rest.
enum Gathered {
    Whole(Bytes),
    Longer(ByteStream),
}

/// Reads `body` whole when it ends within `bound` bytes.
async fn gather(mut body: ByteStream, bound: usize) -> Result<Gathered, StorageError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
        len += chunk.len();
        chunks.push(chunk);
        if len > bound {
            let read = futures_util::stream::iter(chunks.into_iter().map(Ok));
            return Ok(Gathered::Longer(Box::pin(read.chain(body))));
        }
    }
    Ok(Gathered::Whole(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => {
            let mut all = bytes::BytesMut::with_capacity(len);
            for c in &chunks {
                all.extend_from_slice(c);
            }
            all.freeze()
        }
    }))
}

/// A typed bind parameter of a pipelined statement.
type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// The values of a write's row statement (`$1`–`$8` of the statements above).
struct RowValues {
    id: Uuid,
    bucket: String,
    key: String,
    owner: Option<Uuid>,
    owner_id: Option<String>,
    version: String,
    metadata: Value,
    user_metadata: Option<Value>,
}

impl RowValues {
    fn new(actor: &Actor, spec: &PutSpec, id: Uuid, version: Uuid, metadata: Value) -> RowValues {
        RowValues {
            id,
            bucket: spec.bucket.clone(),
            key: spec.key.clone(),
            owner: actor.owner(),
            owner_id: actor.sub(),
            version: version.to_string(),
            metadata,
            user_metadata: spec.user_metadata.clone(),
        }
    }

    fn params(&self) -> [(&(dyn ToSql + Sync), Type); 8] {
        [
            (&self.id, Type::UUID),
            (&self.bucket, Type::TEXT),
            (&self.key, Type::TEXT),
            (&self.owner, Type::UUID),
            (&self.owner_id, Type::TEXT),
            (&self.version, Type::TEXT),
            (&self.metadata, Type::JSONB),
            (&self.user_metadata, Type::JSONB),
        ]
    }
}

/// The storage core. Cheap to build per request: it holds pool handles and the backend.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<dyn Backend>,
    pool: Pool,
    statement_timeout_ms: u64,
}

impl Storage {
    pub fn new(backend: Arc<dyn Backend>, pool: Pool, statement_timeout_ms: u64) -> Storage {
        Storage {
            backend,
            pool,
            statement_timeout_ms,
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    async fn tx(&self, actor: &Actor, read_only: bool) -> Result<RequestTx, StorageError> {
        let info = RequestInfo {
            method: &actor.method,
            path: &actor.path,
            headers: actor.headers.clone(),
        };
        Ok(RequestTx::begin(
            &self.pool,
            &actor.caller,
            &info,
            read_only,
            self.statement_timeout_ms,
        )
        .await?)
    }

    fn info(actor: &Actor) -> RequestInfo<'_> {
        RequestInfo {
            method: &actor.method,
            path: &actor.path,
            headers: actor.headers.clone(),
        }
    }

    /// One short transaction in one round trip (see [`RequestTx::pipelined`]).
    #[allow(clippy::type_complexity)]
    async fn pipelined(
        &self,
        actor: &Actor,
        statements: &[(&'static str, &[(&(dyn ToSql + Sync), Type)])],
        commit: bool,
    ) -> Result<Vec<Result<Vec<Row>, tokio_postgres::Error>>, StorageError> {
        Ok(RequestTx::pipelined(
            &self.pool,
            &actor.caller,
            &Self::info(actor),
            false,
            self.statement_timeout_ms,
            statements,
            commit,
        )
        .await?)
    }

    /// A read-only statement in one round trip (BEGIN READ ONLY, settings, statement, COMMIT), the
    /// statement prepared once per pooled connection (as [`RequestTx::pipelined`] does), so a GET or
    /// HEAD is neither parsed nor planned again each time.
    async fn read_once(
        &self,
        actor: &Actor,
        sql: &'static str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, StorageError> {
        let results = RequestTx::pipelined(
            &self.pool,
            &actor.caller,
            &Self::info(actor),
            true,
            self.statement_timeout_ms,
            &[(sql, params)],
            true,
        )
        .await?;
        Ok(results
            .into_iter()
            .next()
            .expect("one statement, one result")?)
    }

    // ---- buckets -------------------------------------------------------------------------------

    pub async fn list_buckets(&self, actor: &Actor) -> Result<Vec<Bucket>, StorageError> {
        let tx = self.tx(actor, true).await?;
        let rows = tx
            .client()
            .query(
                &format!(
                    "select {} from storage.buckets order by name",
                    Bucket::COLUMNS
                ),
                &[],
            )
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(Bucket::from_row).collect())
    }

    pub async fn get_bucket(&self, actor: &Actor, id: &str) -> Result<Bucket, StorageError> {
        let tx = self.tx(actor, true).await?;
        let row = tx
            .client()
            .query_opt(
                &format!(
                    "select {} from storage.buckets where id = $1",
                    Bucket::COLUMNS
                ),
                &[&id],
            )
            .await?;
        tx.commit().await?;
        row.as_ref()
            .map(Bucket::from_row)
            .ok_or(StorageError::NoSuchBucket)
    }

    pub async fn create_bucket(
        &self,
        actor: &Actor,
        id: &str,
        name: &str,
        spec: &BucketSpec,
    ) -> Result<Bucket, StorageError> {
        check_bucket_name(id)?;
        let tx = self.tx(actor, false).await?;
        let row = tx
            .client()
            .query_one(
                &format!(
                    "insert into storage.buckets (id, name, owner, owner_id, public, file_size_limit, allowed_mime_types)
                     values ($1, $2, $3, $4, coalesce($5, false), $6, $7) returning {}",
                    Bucket::COLUMNS
                ),
                &[
                    &id,
                    &name,
                    &actor.owner(),
                    &actor.sub(),
                    &spec.public,
                    &spec.file_size_limit.flatten(),
                    &spec.allowed_mime_types.clone().flatten(),
                ],
            )
            .await
            .map_err(|e| match from_db(&e) {
                Some(StorageError::KeyExists) => StorageError::BucketExists,
                _ => e.into(),
            })?;
        tx.commit().await?;
        Ok(Bucket::from_row(&row))
    }

    pub async fn update_bucket(
        &self,
        actor: &Actor,
        id: &str,
        spec: &BucketSpec,
    ) -> Result<Bucket, StorageError> {
        let tx = self.tx(actor, false).await?;
        let row = tx
            .client()
            .query_opt(
                &format!(
                    "update storage.buckets set public = coalesce($2, public),
                       file_size_limit = case when $3 then $4 else file_size_limit end,
                       allowed_mime_types = case when $5 then $6 else allowed_mime_types end,
                       updated_at = now()
                     where id = $1 returning {}",
                    Bucket::COLUMNS
                ),
                &[
                    &id,
                    &spec.public,
                    &spec.file_size_limit.is_some(),
                    &spec.file_size_limit.flatten(),
                    &spec.allowed_mime_types.is_some(),
                    &spec.allowed_mime_types.clone().flatten(),
                ],
            )
            .await?;
        tx.commit().await?;
        row.as_ref()
            .map(Bucket::from_row)
            .ok_or(StorageError::NoSuchBucket)
    }

    /// Deletes a bucket; fails with `BucketNotEmpty` while objects remain.
    pub async fn delete_bucket(&self, actor: &Actor, id: &str) -> Result<(), StorageError> {
        let tx = self.tx(actor, false).await?;
        let n = tx
            .client()
            .execute("delete from storage.buckets where id = $1", &[&id])
            .await
            .map_err(|e| match from_db(&e) {
                Some(StorageError::NoSuchBucket) => StorageError::BucketNotEmpty,
                _ => e.into(),
            })?;
        tx.commit().await?;
        if n == 0 {
            return Err(StorageError::NoSuchBucket);
        }
        Ok(())
    }

    /// Deletes every object of a bucket the caller may delete; returns how many.
    pub async fn empty_bucket(&self, actor: &Actor, id: &str) -> Result<u64, StorageError> {
        let tx = self.tx(actor, false).await?;
        let exists = tx
            .client()
            .query_opt("select 1 from storage.buckets where id = $1", &[&id])
            .await?
            .is_some();
        if !exists {
            tx.rollback().await.ok();
            return Err(StorageError::NoSuchBucket);
        }
        let rows = tx
            .client()
            .query(
                &format!(
                    "delete from storage.objects where bucket_id = $1 returning {GONE_COLUMNS}"
                ),
                &[&id],
            )
            .await?;
        tx.commit().await?;
        let gone: Vec<ObjectInfo> = rows.iter().filter_map(ObjectInfo::from_row).collect();
        self.remove_blobs(gone.iter().flat_map(ObjectInfo::blobs))
            .await;
        Ok(rows.len() as u64)
    }

    // ---- objects -------------------------------------------------------------------------------

    /// An object's row as the caller may see it.
    pub async fn head(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectInfo, StorageError> {
        let rows = self
            .read_once(
                actor,
                HEAD_SQL,
                &[(&bucket, Type::TEXT), (&key, Type::TEXT)],
            )
            .await?;
        rows.first()
            .and_then(ObjectInfo::from_row)
            .ok_or(StorageError::NoSuchKey)
    }

    /// The object's row and a stream of its bytes (all, or `(start, len)`). The row is read in a short
    /// read-only transaction; the bytes stream afterwards with no connection held. An overwrite that
    /// removes the version between the two is answered by reading the row again.
    pub async fn get(
        &self,
        actor: &Actor,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, ByteStream, Option<(u64, u64)>), StorageError> {
        for _ in 0..3 {
            let info = self.head(actor, bucket, key).await?;
            let span = range.map(|r| r.resolve(info.size)).transpose()?;
            let read = match &info.parts {
                Some(parts) => {
                    let parts: Vec<(BlobKey, u64)> = parts
                        .iter()
                        .map(|(id, size)| (BlobKey::Part { id: *id }, *size))
                        .collect();
                    self.backend.read_parts(&parts, span).await
                }
                None => self.backend.read(&info.blob(), span).await,
            };
            match read {
                Ok(stream) => return Ok((info, stream, span)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StorageError::NoSuchKey)
    }

    /// Checks a write before any byte of it is read: bucket, declared size, MIME type, and the policies
    /// (the row statement runs and is rolled back), all in one round trip. Returns the object id the
    /// write will carry and the size limit to enforce while streaming.
    pub async fn check_write(
        &self,
        actor: &Actor,
        spec: &PutSpec,
    ) -> Result<(Uuid, Option<u64>), StorageError> {
        check_key(&spec.key)?;
        // A new object gets this id; an overwrite keeps its row's (the probe returns whichever).
        let fresh = self.backend.new_object_id();
        let row = RowValues::new(actor, spec, fresh, Uuid::new_v4(), json!({}));
        let sql = if spec.upsert { UPSERT_SQL } else { INSERT_SQL };
        // Always rolled back: the probe only asks whether the row statement would pass.
        let mut results = self
            .pipelined(
                actor,
                &[
                    (LIMITS_SQL, &[(&spec.bucket, Type::TEXT)]),
                    (sql, &row.params()),
                ],
                false,
            )
            .await?
            .into_iter();
        let (limits, probe) = match (results.next(), results.next()) {
            (Some(l), Some(p)) => (l?, p),
            _ => unreachable!("two statements, two results"),
        };
        let limit = bucket_limits(&limits, spec, spec.declared_len)?;
        let probe = probe?;
        let id = probe
            .first()
            .map(|r| r.get("id"))
            .ok_or(StorageError::Conflict)?;
        Ok((id, limit))
    }

    /// Commits a written blob's row in one round trip; on refusal removes the blob. Removes the
    /// replaced version's blobs after the commit.
    async fn commit_write(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        blob: (Uuid, Uuid),
        metadata: Value,
    ) -> Result<ObjectInfo, StorageError> {
        let (id, version) = blob;
        match self
            .commit_row(actor, spec, (id, version), metadata, None)
            .await
        {
            Err(e) => {
                self.remove_blobs([BlobKey::Object { id, version }]).await;
                Err(e)
            }
            Ok((info, _)) => Ok(info),
        }
    }

    /// Commits an object version's row in one round trip, then removes the version it replaced.
    /// With `adopt` = (upload id, listed part ids), the version is the upload's listed parts: the
    /// same transaction records them as the version's layout and forgets the upload, and returns the
    /// parts not listed (for the caller to remove). On failure nothing is committed or removed.
    async fn commit_row(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        (id, version): (Uuid, Uuid),
        metadata: Value,
        adopt: Option<(&str, &[Uuid])>,
    ) -> Result<(ObjectInfo, Vec<Uuid>), StorageError> {
        let row = RowValues::new(actor, spec, id, version, metadata);
        let sql = if spec.upsert {
            UPSERT_COMMIT_SQL
        } else {
            INSERT_SQL
        };
        let version_text = version.to_string();
        let adopt_params: Option<[Param; 4]> = adopt.as_ref().map(|(upload_id, parts)| {
            [
                (upload_id as &(dyn ToSql + Sync), Type::TEXT),
                (&row.id as &(dyn ToSql + Sync), Type::UUID),
                (&version_text as &(dyn ToSql + Sync), Type::TEXT),
                (parts as &(dyn ToSql + Sync), Type::UUID_ARRAY),
            ]
        });
        let params = row.params();
        let mut statements: Vec<(&str, &[Param])> = vec![(sql, &params)];
        if let Some(p) = &adopt_params {
            statements.push(("select storage.doska_adopt_upload($1, $2, $3, $4)", p));
        }
        let mut results = self.pipelined(actor, &statements, true).await?.into_iter();
        // No row: the key now belongs to another object (deleted and recreated by someone else
        // while the bytes flowed); the guarded statement wrote nothing.
        let rows = results.next().expect("one result per statement")?;
        let row = rows.into_iter().next().ok_or(StorageError::Conflict)?;
        let rest: Vec<Uuid> = match results.next() {
            Some(adopted) => adopted?
                .first()
                .and_then(|r| r.get::<_, Option<Vec<Uuid>>>(0))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let old: Option<String> = row.get("old_version");
        let old_parts = parse_layout(row.get("old_parts"));
        let info = ObjectInfo::from_row(&row).ok_or(StorageError::Conflict)?;
        let old = old.and_then(|o| Uuid::parse_str(&o).ok());
        self.remove_replaced(&info, old, old_parts).await;
        Ok((info, rest))
    }

    /// Stores an object: checked, streamed to a new durable blob, committed, old version removed.
    /// A body declared at most [`SMALL_PUT`] bytes long is read whole first and stored by
    /// [`Storage::put_small`] in one transaction.
    pub async fn put(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        body: ByteStream,
    ) -> Result<ObjectInfo, StorageError> {
        let body = match spec.declared_len {
            Some(len) if len <= SMALL_PUT => match gather(body, SMALL_PUT as usize).await? {
                Gathered::Whole(bytes) => return self.put_small(actor, spec, bytes).await,
                Gathered::Longer(body) => body,
            },
            _ => body,
        };
        let (id, limit) = self.check_write(actor, spec).await?;
        let version = Uuid::new_v4();
        let written = self
            .backend
            .write(&BlobKey::Object { id, version }, body, limit)
            .await
            .map_err(|e| write_error(e, limit))?;
        let etag = format!("\"{}\"", hex::encode(written.md5));
        let metadata =
            object_metadata(written.size, &etag, &spec.content_type, &spec.cache_control);
        self.commit_write(actor, spec, (id, version), metadata)
            .await
    }

    /// Stores an object whose bytes are all in hand, in ONE transaction as the caller: its first
    /// round trip runs the bucket's limits and the row statement (RLS decides, as in the check of a
    /// streamed write, but the row is the real one, with its ETag and size); then the bytes go to a
    /// new blob, durable with its folder entry, while the transaction waits; then COMMIT. Refused or
    /// failed before the commit, the transaction rolls back and the blob (if made) is removed; the
    /// version replaced is removed only after the commit. Holding the transaction during a small
    /// write costs a pooled connection for one `fdatasync`; it saves the second transaction (the
    /// probe and its rollback) that a streamed write needs, because a streamed write must not hold
    /// a connection while bytes flow from the network and here none do.
    ///
    /// The blob is named after the row's id, which for an overwrite is the existing row's: that is
    /// why the row statement runs before the bytes are written, not after.
    async fn put_small(
        &self,
        actor: &Actor,
        spec: &PutSpec,
        bytes: Bytes,
    ) -> Result<ObjectInfo, StorageError> {
        check_key(&spec.key)?;
        let size = bytes.len() as u64;
        let etag = format!("\"{}\"", hex::encode(Md5::digest(&bytes)));
        let metadata = object_metadata(size, &etag, &spec.content_type, &spec.cache_control);
        let version = Uuid::new_v4();
        let row = RowValues::new(actor, spec, self.backend.new_object_id(), version, metadata);
        let sql = if spec.upsert { UPSERT_SQL } else { INSERT_SQL };
        let (tx, results) = RequestTx::pipelined_open(
            &self.pool,
            &actor.caller,
            &Self::info(actor),
            self.statement_timeout_ms,
            &[
                (LIMITS_SQL, &[(&spec.bucket, Type::TEXT)]),
                (sql, &row.params()),
            ],
        )
        .await?;
        let checked = (|| {
            let mut results = results.into_iter();
            let (limits, written) = match (results.next(), results.next()) {
                (Some(l), Some(w)) => (l?, w),
                _ => unreachable!("two statements, two results"),
            };
            // The bucket and its limits answer first, as in `check_write`: a missing bucket is
            // NoSuchBucket even where the policies would also refuse the row.
            bucket_limits(&limits, spec, Some(size))?;
            let row = written?.into_iter().next().ok_or(StorageError::Conflict)?;
            let info = ObjectInfo::from_row(&row).ok_or(StorageError::Conflict)?;
            let old: Option<String> = row.get("old_version");
            let old = old.and_then(|o| Uuid::parse_str(&o).ok());
            Ok::<_, StorageError>((info, old, parse_layout(row.get("old_parts"))))
        })();
        let (info, old, old_parts) = match checked {
            Ok(c) => c,
            Err(e) => {
                tx.rollback().await.ok();
                return Err(e);
            }
        };
        if let Err(e) = self.backend.write_small(&info.blob(), bytes).await {
            tx.rollback().await.ok();
            return Err(e.into());
        }
        // A failed COMMIT leaves the blob: whether the row committed is unknown, and orphan cleanup
        // removes it later if no row names it.
        tx.commit().await?;
        self.remove_replaced(&info, old, old_parts).await;
        Ok(info)
    }

    /// Copies an object (its bytes into a new blob) to `spec`'s place.
    pub async fn copy(
        &self,
        actor: &Actor,
        src_bucket: &str,
        src_key: &str,
        spec: &PutSpec,
    ) -> Result<ObjectInfo, StorageError> {
        let (src, stream, _) = self.get(actor, src_bucket, src_key, None).await?;
        let spec = PutSpec {
            declared_len: Some(src.size),
            ..spec.clone()
        };
        let (id, limit) = self.check_write(actor, &spec).await?;
        let version = Uuid::new_v4();
        let written = self
            .backend
            .write(&BlobKey::Object { id, version }, stream, limit)
            .await
            .map_err(|e| write_error(e, limit))?;
        let metadata = object_metadata(
            written.size,
            &src.etag,
            &spec.content_type,
            &spec.cache_control,
        );
        self.commit_write(actor, &spec, (id, version), metadata)
            .await
    }

    /// Renames an object (the bytes stay where they are: they are named by id, not key).
    pub async fn rename(
        &self,
        actor: &Actor,
        bucket: &str,
        from: &str,
        to_bucket: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        check_key(to)?;
        let tx = self.tx(actor, false).await?;
        let n = tx
            .client()
            .execute(
                "update storage.objects set bucket_id = $3, name = $4, updated_at = now()
                 where bucket_id = $1 and name = $2",
                &[&bucket, &from, &to_bucket, &to],
            )
            .await?;
        if n == 0 {
            tx.rollback().await.ok();
            return Err(StorageError::NoSuchKey);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the named objects the caller may delete; returns those deleted.
    pub async fn delete(
        &self,
        actor: &Actor,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<ObjectInfo>, StorageError> {
        let tx = self.tx(actor, false).await?;
        let rows = tx
            .client()
            .query(
                &format!(
                    "delete from storage.objects where bucket_id = $1 and name = any($2) returning {GONE_COLUMNS}"
                ),
                &[&bucket, &keys],
            )
            .await?;
        tx.commit().await?;
        let gone: Vec<ObjectInfo> = rows.iter().filter_map(ObjectInfo::from_row).collect();
        self.remove_blobs(gone.iter().flat_map(ObjectInfo::blobs))
            .await;
        Ok(gone)
    }

    /// Whether a bucket exists (for S3's NoSuchBucket; the S3 door runs as the operator).
    pub async fn bucket_exists(&self, actor: &Actor, bucket: &str) -> Result<bool, StorageError> {
        let rows = self
            .read_once(
                actor,
                "select 1 from storage.doska_bucket($1)",
                &[(&bucket, Type::TEXT)],
            )
            .await?;
        Ok(!rows.is_empty())
    }

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

    // ---- housekeeping --------------------------------------------------------------------------

    /// After a write committed: removes the bytes of the version it replaced (`old`, with its
    /// part layout), if there was one and it is not the version just written.
    async fn remove_replaced(
        &self,
        info: &ObjectInfo,
        old: Option<Uuid>,
        old_parts: Option<Vec<(Uuid, u64)>>,
    ) {
        if let Some(old) = old
            && old != info.version
        {
            let replaced = ObjectInfo {
                version: old,
                parts: old_parts,
                ..info.clone()
            };
            self.remove_blobs(replaced.blobs()).await;
        }
    }

    async fn remove_blobs(&self, blobs: impl IntoIterator<Item = BlobKey>) {
        for b in blobs {
            if let Err(e) = self.backend.remove(&b).await {
                tracing::warn!(error = %e, blob = ?b, "removing stored bytes failed; orphan cleanup will retry");
            }
        }
    }
}

fn write_error(e: WriteError, limit: Option<u64>) -> StorageError {
    match e {
        WriteError::TooLarge => StorageError::TooLarge {
            limit: limit.unwrap_or(0),
        },
        WriteError::Body(b) => StorageError::Body(b.to_string()),
        WriteError::Io(e) => StorageError::Io(e),
    }
}

/// Removes blobs older than `age` that no row refers to. Runs on the admin pool (it must see every
/// row, whatever the policies); several doska processes may share a storage dir, which is why only
/// age, never "not mine", makes a blob an orphan.
pub async fn cleanup_orphans(
    backend: &dyn Backend,
    admin: &Pool,
    age: std::time::Duration,
) -> Result<usize, StorageError> {
    let client = admin
        .get()
        .await
        .map_err(|e| StorageError::Db(TxError::Pool(e)))?;
    // Layouts of versions that are gone (deleted or overwritten): their parts become orphans. A
    // layout commits with its object's row, so one without a row is never about to be used.
    client
        .execute(
            "delete from storage.doska_object_parts l where not exists
               (select 1 from storage.objects o
                where o.id = l.object_id and o.version = l.object_version)",
            &[],
        )
        .await?;
    let candidates = backend.older_than(age).await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    for chunk in candidates.chunks(500) {
        let mut objects: Vec<Uuid> = Vec::new();
        let mut versions: Vec<String> = Vec::new();
        let mut parts: Vec<Uuid> = Vec::new();
        for b in chunk {
            match b {
                BlobKey::Object { id, version } => {
                    objects.push(*id);
                    versions.push(version.to_string());
                }
                BlobKey::Part { id } => parts.push(*id),
            }
        }
        let live = client
            .query(
                "select o.id, o.version from storage.objects o
                   join unnest($1::uuid[], $2::text[]) as c(id, version)
                     on o.id = c.id and o.version = c.version
                 union all
                 select p.id, null from storage.s3_multipart_uploads_parts p where p.id = any($3)
                 union all
                 select l.part_id, null from storage.doska_object_parts l
                   join storage.objects o on o.id = l.object_id and o.version = l.object_version
                 where l.part_id = any($3)",
                &[&objects, &versions, &parts],
            )
            .await?;
        for b in chunk {
            let referenced = live.iter().any(|r| {
                let id: Uuid = r.get(0);
                let version: Option<String> = r.get(1);
                match b {
                    BlobKey::Object { id: i, version: v } => {
                        id == *i && version.as_deref() == Some(v.to_string().as_str())
                    }
                    BlobKey::Part { id: i } => id == *i && version.is_none(),
                }
            });
            if !referenced {
                backend.remove(b).await?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Collects a stream into memory (small bodies: XML and JSON requests, tests).
pub async fn collect(mut s: ByteStream, limit: usize) -> Result<Bytes, StorageError> {
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
        if out.len() + chunk.len() > limit {
            return Err(StorageError::TooLarge {
                limit: limit as u64,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_bucket_names() {
        assert!(check_key("a/b c/ünïcode ✓.pdf").is_ok());
        assert!(
            check_key("../../etc/passwd").is_ok(),
            "keys are never paths"
        );
        assert!(check_key("").is_err());
        assert!(check_key("a\0b").is_err());
        assert!(check_key(&"x".repeat(1025)).is_err());
        assert!(check_bucket_name("materials-2024.v1_x").is_ok());
        assert!(check_bucket_name("a/b").is_err());
        assert!(check_bucket_name("").is_err());
    }

    #[test]
    fn mime_lists() {
        let allowed = vec!["image/*".to_string(), "application/pdf".to_string()];
        assert!(mime_allowed(&allowed, "image/png"));
        assert!(mime_allowed(&allowed, "application/pdf; charset=binary"));
        assert!(!mime_allowed(&allowed, "text/plain"));
        assert!(mime_allowed(&["*/*".into()], "text/plain"));
    }

    #[test]
    fn multipart_etags_match_s3() {
        // Two parts "a" and "b": md5(md5("a") ++ md5("b")) with "-2".
        let a = format!("\"{}\"", hex::encode(Md5::digest(b"a")));
        let b = format!("\"{}\"", hex::encode(Md5::digest(b"b")));
        let mut h = Md5::new();
        h.update(Md5::digest(b"a"));
        h.update(Md5::digest(b"b"));
        assert_eq!(
            multipart_etag(&[a, b]),
            format!("\"{}-2\"", hex::encode(h.finalize()))
        );
    }
}
