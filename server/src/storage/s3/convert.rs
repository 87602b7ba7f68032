//! Between S3's messages (s3s DTOs) and the storage core: errors to S3 codes, ETags, times,
//! metadata, conditional-request checks, listing pages, byte ranges, and the outgoing byte stream
//! with its length.

use super::*;

pub(super) fn s3_err(e: StorageError) -> S3Error {
    let code = match &e {
        StorageError::NoSuchBucket => S3ErrorCode::NoSuchBucket,
        StorageError::NoSuchKey => S3ErrorCode::NoSuchKey,
        StorageError::NoSuchUpload => S3ErrorCode::NoSuchUpload,
        StorageError::NoSuchVersion => S3ErrorCode::NoSuchVersion,
        StorageError::IsDeleteMarker => S3ErrorCode::MethodNotAllowed,
        StorageError::KeyExists => S3ErrorCode::PreconditionFailed,
        StorageError::BucketExists => S3ErrorCode::BucketAlreadyOwnedByYou,
        StorageError::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
        StorageError::Denied => S3ErrorCode::AccessDenied,
        StorageError::TooLarge { .. } => S3ErrorCode::EntityTooLarge,
        StorageError::MimeNotAllowed(_)
        | StorageError::InvalidKey(_)
        | StorageError::InvalidInput(_) => S3ErrorCode::InvalidArgument,
        StorageError::InvalidBucketName(_) => S3ErrorCode::InvalidBucketName,
        StorageError::InvalidPart(_) => S3ErrorCode::InvalidPart,
        StorageError::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        StorageError::InvalidRange => S3ErrorCode::InvalidRange,
        StorageError::Conflict => S3ErrorCode::OperationAborted,
        StorageError::Body(_) => S3ErrorCode::IncompleteBody,
        StorageError::Unavailable(_) => {
            tracing::warn!(error = %e, "S3 operation failed");
            S3ErrorCode::ServiceUnavailable
        }
        StorageError::DiskFull => {
            // S3 has no code for it; MinIO answers 507 too (XMinioStorageFull).
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("InsufficientStorage".into()),
                e.to_string(),
            );
            err.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
            return err;
        }
        StorageError::Db(db) if e.is_db_unavailable() => {
            crate::db::outage::unavailable("s3", db);
            return S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                "The database is unavailable; retry shortly",
            );
        }
        StorageError::Db(_) | StorageError::Io(_) => {
            tracing::error!(error = %e, "S3 operation failed");
            return S3Error::with_message(S3ErrorCode::InternalError, "internal error");
        }
    };
    S3Error::with_message(code, e.to_string())
}

pub(super) fn etag(quoted: &str) -> ETag {
    ETag::Strong(quoted.trim_matches('"').to_string())
}

pub(super) fn ts(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from(std::time::SystemTime::from(t))
}

pub(super) fn body_stream(blob: Option<StreamingBlob>) -> ByteStream {
    match blob {
        Some(b) => Box::pin(b),
        None => crate::storage::disk::once(bytes::Bytes::new()),
    }
}

pub(super) fn user_metadata(m: Option<dto::Metadata>) -> Option<serde_json::Value> {
    m.filter(|m| !m.is_empty())
        .map(|m| serde_json::to_value(m).unwrap_or_default())
}

pub(super) fn metadata_of(info: &ObjectInfo) -> Option<dto::Metadata> {
    let obj = info.user_metadata.as_ref()?.as_object()?;
    Some(
        obj.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
    )
}

/// Answers `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since` for a read.
pub(super) fn preconditions(
    info: &ObjectInfo,
    if_match: &Option<dto::ETagCondition>,
    if_none_match: &Option<dto::ETagCondition>,
    if_modified_since: &Option<Timestamp>,
    if_unmodified_since: &Option<Timestamp>,
) -> S3Result<()> {
    let current = etag(&info.etag);
    let matches = |c: &dto::ETagCondition| match c {
        dto::ETagCondition::Any => true,
        dto::ETagCondition::ETag(e) => e.value() == current.value(),
    };
    let modified = std::time::SystemTime::from(info.updated_at);
    let to_sys = |t: &Timestamp| std::time::SystemTime::from(time::OffsetDateTime::from(t.clone()));
    if let Some(c) = if_match
        && !matches(c)
    {
        return Err(s3_error!(PreconditionFailed));
    }
    if let Some(t) = if_unmodified_since
        && if_match.is_none()
        && modified_secs(modified) > modified_secs(to_sys(t))
    {
        return Err(s3_error!(PreconditionFailed));
    }
    if let Some(c) = if_none_match
        && matches(c)
    {
        return Err(not_modified(info));
    }
    if let Some(t) = if_modified_since
        && if_none_match.is_none()
        && modified_secs(modified) <= modified_secs(to_sys(t))
    {
        return Err(not_modified(info));
    }
    Ok(())
}

/// 304, with the ETag and Last-Modified a cache revalidates against (as HTTP asks).
fn not_modified(info: &ObjectInfo) -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&info.etag) {
        headers.insert(http::header::ETAG, v);
    }
    let mut date = Vec::new();
    if ts(info.updated_at)
        .format(dto::TimestampFormat::HttpDate, &mut date)
        .is_ok()
        && let Ok(v) = http::HeaderValue::from_bytes(&date)
    {
        headers.insert(http::header::LAST_MODIFIED, v);
    }
    e.set_headers(headers);
    e
}

/// The checksums kept with an object, when the client asked for them (`x-amz-checksum-mode`).
pub(super) fn checksums_if(info: &ObjectInfo, mode: &Option<dto::ChecksumMode>) -> dto::Checksum {
    match mode {
        Some(m) if m.as_str().eq_ignore_ascii_case("ENABLED") => {
            integrity::from_metadata(&info.metadata)
        }
        _ => dto::Checksum::default(),
    }
}

/// HTTP dates have whole seconds.
pub(super) fn modified_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What `encoding-type=url` listings escape: everything but unreserved characters and `/`.
pub(super) const KEY_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Applies a listing's `EncodingType` to a key (boto3 asks for `url` and decodes what it gets).
pub(super) fn encode_key(encoding: &Option<dto::EncodingType>, key: String) -> String {
    match encoding {
        Some(e) if e.as_str() == dto::EncodingType::URL => {
            percent_encoding::utf8_percent_encode(&key, KEY_ESCAPES).to_string()
        }
        _ => key,
    }
}

/// The `(bucket, key)` a copy reads from; access-point sources are not served.
pub(super) fn copy_source(src: &dto::CopySource) -> S3Result<(String, String)> {
    match src {
        dto::CopySource::Bucket { bucket, key, .. } => Ok((bucket.to_string(), key.to_string())),
        _ => Err(s3_error!(NotImplemented, "Access point copy sources")),
    }
}

/// The stored content type of an upload: the declared one, else `application/octet-stream`.
pub(super) fn content_type_or_default(declared: Option<dto::ContentType>) -> String {
    declared.unwrap_or_else(|| "application/octet-stream".into())
}

/// A list request's page size: `max-keys` (default and ceiling 1000).
pub(super) fn max_keys(asked: Option<i32>) -> usize {
    asked.unwrap_or(1000).clamp(0, 1000) as usize
}

/// A listing page's objects and common prefixes as S3 lists them, keys encoded as asked.
pub(super) fn listed(
    page: &ListPage,
    enc: &Option<dto::EncodingType>,
    with_owner: bool,
) -> (Option<dto::ObjectList>, Option<dto::CommonPrefixList>) {
    (
        Some(
            page.objects
                .iter()
                .map(|o| S3Door::s3_object(o, enc, with_owner))
                .collect(),
        ),
        Some(
            page.prefixes
                .iter()
                .map(|p| dto::CommonPrefix {
                    prefix: Some(encode_key(enc, p.clone())),
                })
                .collect(),
        ),
    )
}

pub(super) fn range_of(r: &Option<dto::Range>) -> Option<ByteRange> {
    r.as_ref().map(|r| match *r {
        dto::Range::Int { first, last } => ByteRange::From { first, last },
        dto::Range::Suffix { length } => ByteRange::Suffix { len: length },
    })
}

/// An object's bytes on their way out, with their length known (s3s sends it as Content-Length).
pub(super) struct Outgoing {
    pub(super) inner: sync_wrapper::SyncStream<ByteStream>,
    pub(super) remaining: u64,
}

impl futures_util::Stream for Outgoing {
    type Item = Result<bytes::Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
        }
        polled
    }
}

impl s3s::stream::ByteStream for Outgoing {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        s3s::stream::RemainingLength::new_exact(self.remaining as usize)
    }
}

/// The owner S3 names for an object or bucket: its owner's id, else the operator (`doska`).
pub(super) fn owner(id: Option<&str>) -> dto::Owner {
    let id = id.unwrap_or("doska").to_string();
    dto::Owner {
        display_name: Some(id.clone()),
        id: Some(id),
    }
}

/// The content headers S3 keeps with an object besides Content-Type and Cache-Control.
#[derive(Default)]
pub(super) struct Kept {
    pub encoding: Option<String>,
    pub disposition: Option<String>,
    pub language: Option<String>,
    pub expires: Option<Timestamp>,
}

impl Kept {
    /// As metadata keys of the object's row (`expires` as an HTTP date).
    pub(super) fn to_metadata(&self, into: &mut serde_json::Map<String, serde_json::Value>) {
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                into.insert(k.into(), v.clone().into());
            }
        };
        // `aws-chunked` names how the request's body was sent, not how the object is encoded.
        let encoding = self.encoding.as_deref().map(|e| {
            e.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
                .collect::<Vec<_>>()
                .join(", ")
        });
        put("contentEncoding", &encoding.filter(|e| !e.is_empty()));
        put("contentDisposition", &self.disposition);
        put("contentLanguage", &self.language);
        let mut date = Vec::new();
        if let Some(t) = &self.expires
            && t.format(dto::TimestampFormat::HttpDate, &mut date).is_ok()
        {
            put("expires", &String::from_utf8(date).ok());
        }
    }

    /// What an object's row keeps.
    pub(super) fn of(info: &ObjectInfo) -> Kept {
        let get = |k: &str| {
            info.metadata
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        Kept {
            encoding: get("contentEncoding"),
            disposition: get("contentDisposition"),
            language: get("contentLanguage"),
            expires: get("expires")
                .and_then(|d| Timestamp::parse(dto::TimestampFormat::HttpDate, &d).ok()),
        }
    }
}

/// Server-side encryption is not built: a request asking for it (SSE-S3, SSE-KMS or SSE-C) is
/// refused, rather than its bytes stored in plain text as if encrypted.
pub(super) fn no_sse(
    sse: &Option<dto::ServerSideEncryption>,
    customer: &Option<dto::SSECustomerAlgorithm>,
) -> S3Result<()> {
    if sse.is_some() || customer.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "Server-side encryption is not supported by this server"
        ));
    }
    Ok(())
}

/// An object's `partNumber`: its byte range within the object and how many parts it has. An
/// object stored whole is one part.
pub(super) fn part_range(info: &ObjectInfo, number: i32) -> S3Result<(Option<ByteRange>, i32)> {
    let sizes: Vec<u64> = match &info.parts {
        Some(parts) => parts.iter().map(|(_, s)| *s).collect(),
        None => vec![info.size],
    };
    let n = usize::try_from(number).unwrap_or(0);
    if n == 0 || n > sizes.len() {
        return Err(s3_error!(InvalidPart, "The object has no part {number}"));
    }
    let start: u64 = sizes[..n - 1].iter().sum();
    let range = (sizes[n - 1] > 0).then(|| ByteRange::From {
        first: start,
        last: Some(start + sizes[n - 1] - 1),
    });
    Ok((range, sizes.len() as i32))
}

/// What carries a tag set, and how many tags S3 lets it have.
#[derive(Debug, Clone, Copy)]
pub(super) enum Tagged {
    Object,
    Bucket,
}

impl Tagged {
    fn limit(self) -> usize {
        match self {
            Tagged::Object => 10,
            Tagged::Bucket => 50,
        }
    }
}

/// A tag set (object tags are kept as the object's metadata `tags`, bucket tags on the bucket's
/// row: a JSON object, listed in key order), checked by S3's limits: at most 10 tags on an object
/// or 50 on a bucket, keys of 1–128 characters, values of at most 256, no key twice.
pub(super) fn tags_value(on: Tagged, tags: Vec<(String, String)>) -> S3Result<serde_json::Value> {
    let invalid = |why: String| S3Error::with_message(S3ErrorCode::InvalidTag, why);
    if tags.len() > on.limit() {
        return Err(invalid(format!(
            "A {} can have at most {} tags",
            match on {
                Tagged::Object => "object",
                Tagged::Bucket => "bucket",
            },
            on.limit()
        )));
    }
    let mut map = serde_json::Map::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(invalid("A tag key must have 1 to 128 characters".into()));
        }
        if v.chars().count() > 256 {
            return Err(invalid(
                "A tag value can have at most 256 characters".into(),
            ));
        }
        if map.insert(k, v.into()).is_some() {
            return Err(invalid("Tag keys must be unique".into()));
        }
    }
    Ok(serde_json::Value::Object(map))
}

/// The tags of an `x-amz-tagging` header (a URL query: `k1=v1&k2`).
pub(super) fn tags_of_header(h: &str) -> S3Result<serde_json::Value> {
    tags_value(Tagged::Object, crate::http::query::pairs(h))
}

/// An object's tags as S3 lists them.
pub(super) fn tag_set(info: &ObjectInfo) -> dto::TagSet {
    tag_set_of(info.metadata.get("tags"))
}

/// A kept tag set (see [`tags_value`]) as S3 lists it.
pub(super) fn tag_set_of(tags: Option<&serde_json::Value>) -> dto::TagSet {
    tags.and_then(|t| t.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| dto::Tag {
                    key: Some(k.clone()),
                    value: Some(v.as_str().unwrap_or_default().to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The owner's FULL_CONTROL: the grant every bucket and object has (acl.rs adds everyone's READ
/// for a public bucket). Who else may read or write is decided by the storage policies (RLS).
pub(super) fn owner_grants(o: &dto::Owner) -> dto::Grants {
    vec![dto::Grant {
        grantee: Some(dto::Grantee {
            display_name: o.display_name.clone(),
            email_address: None,
            id: o.id.clone(),
            type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(dto::Permission::from_static(dto::Permission::FULL_CONTROL)),
    }]
}
