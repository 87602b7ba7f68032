//! The storage core both front doors share: buckets and objects as rows in `storage.*`, read and
//! written as the caller's role so row-level security decides every operation, and bytes in a
//! [`Backend`]. A write is checked in one short transaction (a probe, rolled back) before its body
//! streams, and committed in a second short one after the bytes are durable; no transaction or pooled
//! connection is held while bytes flow. A small body, read whole first, takes one transaction that
//! runs the row statement, waits while the bytes are made durable, then commits. A new version is visible only once its row commits, and the
//! version it replaced is removed only after that, so a denied or crashed write never destroys what
//! was there. Rejects empty or NUL-bearing keys, unknown buckets, sizes and MIME types the bucket
//! refuses, and whatever the policies deny.
//!
//! This file holds the shared vocabulary (errors, rows, specs, the caller's transaction); the
//! operations live in rooms of their own: `buckets`, `objects`, `listing`, `multipart` and `cleanup`.

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

mod buckets;
mod cleanup;
mod listing;
mod multipart;
mod objects;
mod s3_settings;
mod small;
pub use s3_settings::BucketSetting;
use small::{Gathered, RowValues, gather};

pub use cleanup::cleanup_orphans;
pub use lifecycle::{Filter as LifecycleFilter, Rule as LifecycleRule, expiration_of};
pub use listing::{ListOrder, SortColumn, SortedList};
pub use versions::{
    Deleted, DeletedVersion, VersionInfo, VersionPage, VersionQuery, answered_version_id,
    version_id_of,
};

pub use multipart::TusState;

use super::backend::{Backend, BlobKey, ByteStream, WriteError};
use crate::{
    db::{
        caller::{RequestInfo, RequestTx, TxError},
        group::Group,
    },
    jwt::Caller,
};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("Bucket not found")]
    NoSuchBucket,
    #[error("Object not found")]
    NoSuchKey,
    #[error("Upload not found")]
    NoSuchUpload,
    /// A version id the key's history does not hold.
    #[error("The specified version does not exist")]
    NoSuchVersion,
    /// A read named a delete marker, which has no bytes.
    #[error("The specified version is a delete marker")]
    IsDeleteMarker,
    /// The key exists and the write did not ask to overwrite it.
    #[error("The resource already exists")]
    KeyExists,
    #[error("The bucket already exists")]
    BucketExists,
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty,
    /// Row-level security (or a missing grant) refused the operation.
    #[error("new row violates row-level security policy")]
    Denied,
    #[error("The object exceeded the maximum allowed size ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("mime type {0} is not supported")]
    MimeNotAllowed(String),
    #[error("Invalid key: {0}")]
    InvalidKey(String),
    #[error("Invalid bucket name: {0}")]
    InvalidBucketName(String),
    /// A multipart completion named a part that was not uploaded, or with another ETag.
    #[error("Invalid part: {0}")]
    InvalidPart(String),
    #[error("Parts must be listed in ascending order")]
    InvalidPartOrder,
    #[error("The requested range is not satisfiable")]
    InvalidRange,
    /// The row changed under a write in a way it cannot resolve (deleted and recreated meanwhile).
    #[error("The object changed during the write; retry")]
    Conflict,
    /// PostgreSQL refused a value the client sent (SQLSTATE class 22, data_exception): a NUL byte
    /// in a bucket id, key or header (text cannot hold it), a token whose role does not exist.
    #[error("Invalid request: {0}")]
    InvalidInput(String),
    /// The client's body failed mid-way.
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("{0}")]
    Db(TxError),
    #[error("storage I/O failed: {0}")]
    Io(std::io::Error),
    /// The backend holding the bytes cannot serve now (unreachable, refusing, full): a 503.
    #[error("Storage backend unavailable: {0}")]
    Unavailable(String),
    /// The file store's disk (or the account's quota) is full; the write kept nothing.
    #[error("The storage disk is full: nothing was stored; retry once space is freed")]
    DiskFull,
}

impl StorageError {
    /// The database could not be reached (down, restarting): the client may retry.
    pub fn is_db_unavailable(&self) -> bool {
        matches!(self, StorageError::Db(e) if e.is_unavailable())
    }
}

/// ENOSPC (no space left on device) or EDQUOT (disk quota exceeded).
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

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
        if is_disk_full(&e) {
            StorageError::DiskFull
        } else if let Some(why) = super::backend::unavailable_reason(&e) {
            StorageError::Unavailable(why.to_string())
        } else {
            StorageError::Io(e)
        }
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
        // data_exception: the client's value (22021 a NUL byte in text, 22023 `set_config('role')`
        // of a role that does not exist, 22001 a value too long, …), never the server's fault.
        c if c.starts_with("22") => StorageError::InvalidInput(
            e.as_db_error()
                .map_or_else(|| c.to_string(), |d| d.message().to_string()),
        ),
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

/// [`object_columns!`] for statements built at run time (list-v2's other orders).
const OBJECT_COLUMNS: &str = object_columns!();

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
    /// More of the object's attributes, kept beside Supabase's keys in its `metadata` column: the
    /// S3 door's `contentEncoding`, `contentDisposition`, `contentLanguage`, `expires` and
    /// verified `checksum*` values (a JSON object; `None` keeps nothing more).
    pub extra: Option<Value>,
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

fn object_metadata(size: u64, etag: &str, spec: &PutSpec) -> Value {
    let mut m = json!({
        "eTag": etag,
        "size": size,
        "mimetype": spec.content_type,
        "cacheControl": spec.cache_control.clone().unwrap_or_else(|| "max-age=3600".into()),
        "lastModified": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "contentLength": size,
        "httpStatusCode": 200,
    });
    if let (Some(Value::Object(extra)), Value::Object(m)) = (&spec.extra, &mut m) {
        for (k, v) in extra {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    m
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
            ", (select version from old) as old_version, (select parts from old) as old_parts,
  case when (select version from old) is null then false
    else storage.doska_version_kept(o.id, (select version from old)) end as old_kept"
        )
    };
}

/// Run before an overwrite's row statement in the same transaction: waits for any concurrent
/// overwrite of the key to finish and locks the row as it then is. Without it, the row statement's
/// `old` (read with the snapshot its statement began with) names the version that was there before
/// a concurrent overwrite committed — not the one this write actually replaces — and the replaced
/// version's file was left for the orphan sweep (issue #12: 4–8 of 20 parallel overwrites). With
/// the row locked first, the row statement starts after the competitor's commit and sees it.
const LOCK_ROW_SQL: &str =
    "select 1 from storage.objects where bucket_id = $1 and name = $2 for update";

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
    ", null::text as old_version, null::jsonb as old_parts, false as old_kept"
);
const HEAD_SQL: &str = concat!(
    "select ",
    object_columns!(),
    ", ",
    layout_column!(),
    " as parts from storage.objects where bucket_id = $1 and name = $2"
);
/// Sets keys of an object's `metadata` in place (its version and bytes stay): S3's object tags.
const PATCH_METADATA_SQL: &str = concat!(
    "update storage.objects set metadata = coalesce(metadata, '{}'::jsonb) || $3
     where bucket_id = $1 and name = $2 returning ",
    object_columns!()
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

/// A typed bind parameter of a pipelined statement.
type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// The storage core. Cheap to build per request: it holds pool handles and the backend.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<dyn Backend>,
    pool: Pool,
    statement_timeout_ms: u64,
    /// Group commit for small writes (see [`Storage::put_small`]); `None`: each alone.
    group: Option<Arc<Group>>,
}

impl Storage {
    pub fn new(backend: Arc<dyn Backend>, pool: Pool, statement_timeout_ms: u64) -> Storage {
        Storage {
            backend,
            pool,
            statement_timeout_ms,
            group: None,
        }
    }

    /// Small writes share transactions through `group` (which must run on the same pool).
    pub fn with_group(self, group: Arc<Group>) -> Storage {
        Storage {
            group: Some(group),
            ..self
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    async fn tx(&self, actor: &Actor, read_only: bool) -> Result<RequestTx, StorageError> {
        Ok(RequestTx::begin(
            &self.pool,
            &actor.caller,
            &Self::info(actor),
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
            search_path: None,
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
}

fn write_error(e: WriteError, limit: Option<u64>) -> StorageError {
    match e {
        WriteError::TooLarge => StorageError::TooLarge {
            limit: limit.unwrap_or(0),
        },
        WriteError::Body(b) => StorageError::Body(b.to_string()),
        WriteError::Io(e) => e.into(),
    }
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

// After the column macros, which they use (`macro_rules!` are in scope only below their definition).
mod lifecycle;
mod versions;

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
