//! POST object: browsers' form uploads. s3s has already checked what the form proves before this
//! runs — the policy document's signature (SigV4 or v2), its expiry, every condition (exact,
//! `starts-with`, `content-length-range`) against the form's fields and the file's size — and
//! answers the success status or redirect itself. Here the upload is written as a PutObject with
//! the form's fields (key, Content-Type, metadata, ACL…), as the signer or, unsigned, as a public
//! bucket allows `anon` under the storage policies. Two fields s3s 0.14 does not hand on — the
//! `acl` field (it reads only `x-amz-acl`) and the file part's filename (for `${filename}` in the
//! key) — are read by [`FormTap`], which watches the form's bytes go by on their way to s3s.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};

use super::*;

/// How much of a form, before its file part, [`FormTap`] keeps to read the fields from.
const MAX_FIELDS: usize = 2 * 1024 * 1024;

/// What [`FormTap`] saw of a form: its fields before the file (names lowercased, as S3 matches
/// them) and the file part's filename; `complete` once the file part's headers went by.
#[derive(Debug, Default)]
pub(super) struct FormSeen {
    boundary: Vec<u8>,
    prefix: Vec<u8>,
    complete: bool,
    overflow: bool,
    fields: HashMap<String, String>,
    filename: Option<String>,
}

impl FormSeen {
    /// Reads the parts in `prefix` up to the file part's headers; true once they are all there.
    fn parse(&mut self) -> bool {
        let delimiter = [b"--".as_slice(), &self.boundary].concat();
        let mut fields = HashMap::new();
        let mut rest = &self.prefix[..];
        while let Some(at) = find(rest, &delimiter) {
            rest = &rest[at + delimiter.len()..];
            let Some(part) = rest.strip_prefix(b"\r\n") else {
                return false; // the closing delimiter, or not yet the line's end
            };
            let Some(head_end) = find(part, b"\r\n\r\n") else {
                return false;
            };
            let head = String::from_utf8_lossy(&part[..head_end]).into_owned();
            let (name, filename) = disposition(&head);
            let Some(name) = name else {
                return false;
            };
            if name.eq_ignore_ascii_case("file") {
                self.fields = fields;
                self.filename = filename;
                return true;
            }
            let body = &part[head_end + 4..];
            let Some(end) = find(body, &delimiter) else {
                return false;
            };
            let value = body[..end].strip_suffix(b"\r\n").unwrap_or(&body[..end]);
            fields.insert(
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(value).into_owned(),
            );
            rest = &body[end..];
        }
        false
    }

    fn feed(&mut self, chunk: &[u8]) {
        if self.complete || self.overflow {
            return;
        }
        if self.prefix.len() + chunk.len() > MAX_FIELDS {
            self.overflow = true;
            self.prefix = Vec::new();
            return;
        }
        self.prefix.extend_from_slice(chunk);
        if self.parse() {
            self.complete = true;
            self.prefix = Vec::new();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A part's `name` and `filename` from its Content-Disposition header.
fn disposition(head: &str) -> (Option<String>, Option<String>) {
    let Some(line) = head
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
    else {
        return (None, None);
    };
    let param = |key: &str| {
        line.split(';').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(key)
                .then(|| v.trim().trim_matches('"').to_string())
        })
    };
    (param("name"), param("filename"))
}

/// A POST form's body on its way to s3s, unchanged, with its fields noted in a [`FormSeen`] the
/// request carries (an extension) to the operation.
pub(super) struct FormTap {
    inner: Incoming,
    seen: Arc<Mutex<FormSeen>>,
}

/// The [`FormSeen`] a request's extensions carry.
#[derive(Clone)]
pub(super) struct SeenForm(Arc<Mutex<FormSeen>>);

impl FormTap {
    /// For a `multipart/form-data` POST: its body tapped, and the request extension to read from.
    pub(super) fn of(req: http::Request<Incoming>) -> http::Request<s3s::Body> {
        let boundary = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|_| req.method() == http::Method::POST)
            .and_then(crate::storage::form::boundary);
        let Some(boundary) = boundary else {
            return req.map(s3s::Body::from);
        };
        let seen = Arc::new(Mutex::new(FormSeen {
            boundary: boundary.into_bytes(),
            ..Default::default()
        }));
        let (mut parts, inner) = req.into_parts();
        parts.extensions.insert(SeenForm(seen.clone()));
        http::Request::from_parts(parts, s3s::Body::http_body_unsync(FormTap { inner, seen }))
    }
}

impl hyper::body::Body for FormTap {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Ok(mut seen) = self.seen.lock()
        {
            seen.feed(data);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Builds `$to { field: $from.field, … }` for fields two s3s DTOs share by name and type.
macro_rules! same_fields {
    ($from:ident => $to:ident { $($f:ident),* $(,)? }) => {
        dto::$to { $($f: $from.$f),* }
    };
}

fn as_put(x: dto::PostObjectInput) -> dto::PutObjectInput {
    same_fields!(x => PutObjectInput {
        acl, body, bucket, bucket_key_enabled, cache_control, checksum_algorithm, checksum_crc32,
        checksum_crc32c, checksum_crc64nvme, checksum_sha1, checksum_sha256, content_disposition,
        content_encoding, content_language, content_length, content_md5, content_type,
        expected_bucket_owner, expires, grant_full_control, grant_read, grant_read_acp,
        grant_write_acp, if_match, if_none_match, key, metadata, object_lock_legal_hold_status,
        object_lock_mode, object_lock_retain_until_date, request_payer, sse_customer_algorithm,
        sse_customer_key, sse_customer_key_md5, ssekms_encryption_context, ssekms_key_id,
        server_side_encryption, storage_class, tagging, website_redirect_location,
        write_offset_bytes,
    })
}

fn as_post(x: dto::PutObjectOutput) -> dto::PostObjectOutput {
    same_fields!(x => PostObjectOutput {
        bucket_key_enabled, checksum_crc32, checksum_crc32c, checksum_crc64nvme, checksum_sha1,
        checksum_sha256, checksum_type, e_tag, expiration, request_charged, sse_customer_algorithm,
        sse_customer_key_md5, ssekms_encryption_context, ssekms_key_id, server_side_encryption,
        size, version_id,
    })
}

impl S3Door {
    pub(super) async fn serve_post_object(
        &self,
        req: S3Request<dto::PostObjectInput>,
    ) -> S3Result<S3Response<dto::PostObjectOutput>> {
        let mut req = req.map_input(as_put);
        let seen = req.extensions.get::<SeenForm>().cloned();
        if let Some(SeenForm(seen)) = seen {
            let seen = seen.lock().map_err(|_| s3_error!(InternalError))?;
            if !seen.complete {
                return Err(s3_error!(
                    InvalidArgument,
                    "A POST form's fields before its file are at most 2 MiB"
                ));
            }
            if let Some(policy) = seen.fields.get("policy") {
                expiration_format(policy)?;
            }
            let i = &mut req.input;
            if i.acl.is_none()
                && let Some(acl) = seen.fields.get("acl")
            {
                i.acl = Some(dto::ObjectCannedACL::from(acl.clone()));
            }
            if let Some(name) = &seen.filename {
                i.key = i.key.replace("${filename}", name);
            }
        }
        self.write_acl_allowed(&req, &req.input.bucket, &acl::write_acl!(req.input))
            .await?;
        self.serve_put_object(req)
            .await
            .map(|res| res.map_output(as_post))
    }
}

/// A policy document's `expiration` must be an ISO 8601 UTC time (`2026-12-06T18:00:00.000Z`), as S3
/// requires (s3s 0.14 also takes other date forms).
fn expiration_format(policy_b64: &str) -> S3Result<()> {
    use base64::Engine as _;
    let refused = || {
        s3_error!(
            InvalidPolicyDocument,
            "Invalid Policy: Invalid 'expiration' value"
        )
    };
    let doc = base64::engine::general_purpose::STANDARD
        .decode(policy_b64.trim())
        .map_err(|_| refused())?;
    let doc: serde_json::Value = serde_json::from_slice(&doc).map_err(|_| refused())?;
    let expiration = doc
        .get("expiration")
        .and_then(|e| e.as_str())
        .ok_or_else(refused)?;
    chrono::NaiveDateTime::parse_from_str(expiration, "%Y-%m-%dT%H:%M:%S%.fZ")
        .map(|_| ())
        .map_err(|_| refused())
}

/// Whether a form POST carries a policy document but no signature (S3 answers 400: a policy
/// without a signature proves nothing, and the form is not an anonymous one either).
pub(super) fn unsigned_policy(extensions: &http::Extensions) -> bool {
    extensions.get::<SeenForm>().is_some_and(|SeenForm(seen)| {
        seen.lock().is_ok_and(|s| {
            s.fields.contains_key("policy")
                && !s.fields.contains_key("signature")
                && !s.fields.contains_key("x-amz-signature")
        })
    })
}

/// A form whose fields break one of its policy's conditions is refused as S3 refuses it: 403
/// AccessDenied ("Invalid according to Policy"); s3s 0.14 answers 400 InvalidPolicyDocument, which
/// S3 keeps for a policy document that does not parse.
pub(super) fn condition_refusal(mut res: http::Response<s3s::Body>) -> http::Response<s3s::Body> {
    const FROM: &[u8] = b"<Code>InvalidPolicyDocument</Code>";
    if res.status() != http::StatusCode::BAD_REQUEST {
        return res;
    }
    let Some(body) = res.body().bytes() else {
        return res;
    };
    let Some(at) = find(&body, FROM) else {
        return res;
    };
    if find(&body, b"<Message>Policy condition").is_none()
        && find(&body, b"<Message>Bucket in form field").is_none()
    {
        return res;
    }
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(b"<Code>AccessDenied</Code>");
    let rest = &body[at + FROM.len()..];
    match find(rest, b"<Message>") {
        Some(m) => {
            out.extend_from_slice(&rest[..m + 9]);
            out.extend_from_slice(b"Invalid according to Policy: ");
            out.extend_from_slice(&rest[m + 9..]);
        }
        None => out.extend_from_slice(rest),
    }
    *res.status_mut() = http::StatusCode::FORBIDDEN;
    if res.headers().contains_key(http::header::CONTENT_LENGTH) {
        res.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(out.len()),
        );
    }
    *res.body_mut() = s3s::Body::from(Bytes::from(out));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(body: &[u8], chunk: usize) -> FormSeen {
        let mut s = FormSeen {
            boundary: b"XyZ".to_vec(),
            ..Default::default()
        };
        for c in body.chunks(chunk) {
            s.feed(c);
        }
        s
    }

    #[test]
    fn fields_before_the_file_are_read_in_any_chunking() {
        let body =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuploads/${filename}\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"ACL\"\r\n\r\npublic-read\r\n\
            --XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a b.txt\"\r\n\
            Content-Type: text/plain\r\n\r\nbytes\r\n--XyZ--\r\n";
        for chunk in [1, 7, 64, body.len()] {
            let s = seen(body, chunk);
            assert!(s.complete, "chunk {chunk}");
            assert_eq!(s.fields["key"], "uploads/${filename}");
            assert_eq!(s.fields["acl"], "public-read");
            assert_eq!(s.filename.as_deref(), Some("a b.txt"));
        }
        // No file part yet: not complete.
        let s = seen(&body[..120], 16);
        assert!(!s.complete);
    }

    #[test]
    fn oversized_fields_stop_the_tap() {
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"big\"\r\n\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_FIELDS + 1));
        let s = seen(&body, 64 * 1024);
        assert!(s.overflow && !s.complete);
    }
}
