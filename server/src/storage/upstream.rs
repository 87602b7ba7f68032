//! The S3 backend (`--storage-backend s3`): object bytes as objects in one bucket of an S3 service
//! (AWS, MinIO, Ceph, or another doska's S3 listener), named exactly like the disk's files
//! (`data/<2 hex>/<object id>.<version>`, `data/<2 hex>/<part id>.part`) — never by a client's key.
//! Requests are signed with SigV4 by rusty-s3 (sans-IO, presigned URLs) and sent by hyper over rustls
//! with the `ring` provider. Bodies stream both ways: a long body of declared length goes on in one
//! streamed PUT; one of unknown length fills parts of [`PART_SIZE`] (a multipart upload when it
//! needs more than one, at most three parts in memory); reads pass ranges through. Rejects nothing itself; an unreachable or refusing service is reported as
//! [`unavailable`] (a 503 at the front doors).

use std::{
    io,
    sync::{Arc, OnceLock},
    time::Duration,
};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use md5::{Digest, Md5};
use rusty_s3::S3Action;

use super::backend::{Backend, BlobKey, ByteStream, WriteError, Written, unavailable};
use super::disk::Disk;
use crate::config::S3Backend;
use crate::http::body::BoxError;

/// Bodies are sent in parts of this size (the last may be smaller); a body no longer than one part
/// goes up in one PUT. 8 MiB × S3's 10,000 parts allows objects up to 78 GiB.
pub const PART_SIZE: usize = 8 << 20;
/// The longest body sent in one PUT (S3's limit).
const MAX_SINGLE_PUT: u64 = 5 << 30;
/// Room past [`PART_SIZE`] in a part's buffer for the chunk that fills it.
const PART_SLACK: usize = 1 << 20;
/// Bodies up to this long grow their buffer as they come (most bodies are small); longer ones get
/// a whole part's buffer at once.
const SMALL_BODY: usize = 256 << 10;
/// Parts of one write on their way to the service at once (while the next one fills).
const PARTS_IN_FLIGHT: usize = 2;
/// Blobs of a multipart object opened before its read starts (see [`Backend::read_parts`]); further
/// ones are opened when the read reaches them.
const EAGER_PARTS: usize = 16;
/// Signed URLs are valid this long (the service checks it when a request starts).
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// How long a request may wait for the service to answer (its headers; bodies stream unbounded).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Every key doska writes starts with this (the disk's `data/` folder).
const PREFIX: &str = "data/";

type ReqBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ReqBody>;

/// Why a request got no answer.
enum Sent {
    Failed(hyper_util::client::legacy::Error),
    TimedOut,
}

/// A request with its headers and body (`len` bytes long).
fn request(
    method: &http::Method,
    url: &url::Url,
    headers: &[(http::HeaderName, String)],
    len: u64,
    body: ReqBody,
) -> io::Result<Request<ReqBody>> {
    let mut req = Request::builder().method(method.clone()).uri(url.as_str());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.header(http::header::CONTENT_LENGTH, len)
        .body(body)
        .map_err(io::Error::other)
}

/// One connection pool for every S3 backend of the process (TLS with ring, the system's roots).
fn client() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system TLS roots: https S3 endpoints will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                match config {
                    Ok(c) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(c),
                    Err(e) => unreachable!("ring supports the default TLS versions: {e}"),
                }
            }
        };
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector)
    })
}

/// An S3 service's bucket as a [`Backend`]. Cheap to clone and to build (the connection pool is
/// shared).
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    /// `Err` when the settings cannot make a bucket URL (config resolution refuses those first).
    bucket: Result<rusty_s3::Bucket, String>,
    credentials: rusty_s3::Credentials,
    endpoint: String,
    name: String,
}

/// The service's answer to a request that failed: its code and message.
fn error_of(body: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(body);
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))?;
        Some(text[start..start + end].to_string())
    };
    (
        field("Code").unwrap_or_default(),
        field("Message").unwrap_or_default(),
    )
}

/// The object key of a blob: its path under the disk's storage dir.
pub fn object_key(key: &BlobKey) -> String {
    let id = match key {
        BlobKey::Object { id, .. } | BlobKey::Part { id } => id,
    };
    format!(
        "{PREFIX}{}/{}",
        &id.simple().to_string()[..2],
        Disk::file_name(key)
    )
}

impl Upstream {
    pub fn new(settings: &S3Backend) -> Upstream {
        Upstream {
            inner: Arc::new(Inner {
                bucket: settings.bucket_url(),
                credentials: rusty_s3::Credentials::new(
                    settings.access_key_id.clone(),
                    settings.secret_access_key.clone(),
                ),
                endpoint: settings.endpoint.clone(),
                name: settings.bucket.clone(),
            }),
        }
    }

    fn bucket(&self) -> io::Result<&rusty_s3::Bucket> {
        self.inner
            .bucket
            .as_ref()
            .map_err(|e| unavailable(format!("the S3 backend is misconfigured: {e}")))
    }

    fn creds(&self) -> Option<&rusty_s3::Credentials> {
        Some(&self.inner.credentials)
    }

    /// Sends a signed request; an answer outside 2xx becomes an error: `NotFound` for a missing key
    /// or upload, [`unavailable`] for the service refusing or failing (its code and message kept).
    async fn send(
        &self,
        method: http::Method,
        url: url::Url,
        headers: &[(http::HeaderName, String)],
        body: Bytes,
        what: &str,
    ) -> io::Result<Response<Incoming>> {
        // A pooled connection the service closed meanwhile (it restarted) fails a request without
        // any answer; requests that may be repeated are sent once more.
        let repeatable = matches!(
            method,
            http::Method::GET | http::Method::PUT | http::Method::DELETE | http::Method::HEAD
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let payload = Full::new(body.clone())
                .map_err(|never| match never {})
                .boxed_unsync();
            let req = request(&method, &url, headers, body.len() as u64, payload)?;
            match self.call(req).await {
                Err(Sent::Failed(e)) if repeatable && attempt == 1 && !e.is_connect() => continue,
                Err(e) => return Err(self.unreachable(e, what)),
                Ok(res) => return self.checked(res, what).await,
            }
        }
    }

    /// One request (no second attempt: its body streams once).
    async fn send_stream(
        &self,
        req: Request<ReqBody>,
        what: &str,
    ) -> io::Result<Response<Incoming>> {
        match self.call(req).await {
            Err(e) => Err(self.unreachable(e, what)),
            Ok(res) => self.checked(res, what).await,
        }
    }

    async fn call(&self, req: Request<ReqBody>) -> Result<Response<Incoming>, Sent> {
        match tokio::time::timeout(ANSWER_TIMEOUT, client().request(req)).await {
            Ok(Ok(res)) => Ok(res),
            Ok(Err(e)) => Err(Sent::Failed(e)),
            Err(_) => Err(Sent::TimedOut),
        }
    }

    fn unreachable(&self, e: Sent, what: &str) -> io::Error {
        let failed = match e {
            Sent::Failed(e) => {
                let cause = std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                format!("is unreachable ({what}): {e}{cause}")
            }
            Sent::TimedOut => format!(
                "did not answer within {}s ({what})",
                ANSWER_TIMEOUT.as_secs()
            ),
        };
        unavailable(format!(
            "the S3 service at {} {failed}",
            self.inner.endpoint
        ))
    }

    /// The answer when it is a success, else the error it stands for.
    async fn checked(&self, res: Response<Incoming>, what: &str) -> io::Result<Response<Incoming>> {
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let body = read_limited(res.into_body(), 64 << 10)
            .await
            .unwrap_or_default();
        let (code, message) = error_of(&body);
        match (status, code.as_str()) {
            (StatusCode::NOT_FOUND, "NoSuchKey" | "NoSuchUpload" | "") => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{what}: {code}"),
            )),
            (_, "BadDigest" | "InvalidDigest") => Err(io::Error::other(format!(
                "the S3 service received other bytes than were sent ({what}): {code}: {message}"
            ))),
            (StatusCode::NOT_FOUND, "NoSuchBucket") => Err(unavailable(format!(
                "the bucket `{}` does not exist on the S3 service at {}",
                self.inner.name, self.inner.endpoint
            ))),
            _ => Err(unavailable(format!(
                "the S3 service at {} refused {what}: {status} {code}: {message}",
                self.inner.endpoint
            ))),
        }
    }

    /// A GET of a blob's bytes (all, or `(start, len)`), answered and ready to stream.
    async fn open(&self, key: &BlobKey, range: Option<(u64, u64)>) -> io::Result<ByteStream> {
        let object = object_key(key);
        let url = self
            .bucket()?
            .get_object(self.creds(), &object)
            .sign(SIGNED_FOR);
        let mut headers = Vec::new();
        if let Some((start, len)) = range {
            if len == 0 {
                return Ok(super::disk::once(Bytes::new()));
            }
            headers.push((
                http::header::RANGE,
                format!("bytes={start}-{}", start + len - 1),
            ));
        }
        let res = self
            .send(http::Method::GET, url, &headers, Bytes::new(), "a read")
            .await?;
        Ok(Box::pin(
            http_body_util::BodyDataStream::new(res.into_body()).map_err(|e| Box::new(e) as _),
        ))
    }

    async fn put_object(&self, object: &str, bytes: Bytes, md5: &[u8]) -> io::Result<()> {
        let url = self
            .bucket()?
            .put_object(self.creds(), object)
            .sign(SIGNED_FOR);
        let headers = [(
            http::HeaderName::from_static("content-md5"),
            base64::engine::general_purpose::STANDARD.encode(md5),
        )];
        self.send(http::Method::PUT, url, &headers, bytes, "a write")
            .await
            .map(drop)
    }

    /// One PUT of `len` bytes streamed from `body` (see [`Backend::write_sized`]).
    async fn put_streamed(
        &self,
        key: &BlobKey,
        body: ByteStream,
        len: u64,
    ) -> Result<Written, WriteError> {
        use std::sync::Mutex;
        /// What passed through, and how the body failed if it did.
        #[derive(Default)]
        struct Tally {
            md5: Md5,
            size: u64,
            failure: Option<String>,
        }
        let object = object_key(key);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let seen = tally.clone();
        let frames = body.map(move |chunk| {
            let mut t = seen.lock().unwrap_or_else(|e| e.into_inner());
            match chunk {
                Ok(c) => {
                    t.size += c.len() as u64;
                    if t.size > len {
                        t.failure =
                            Some(format!("the body is longer than its declared {len} bytes"));
                        return Err(BoxError::from("body longer than declared"));
                    }
                    t.md5.update(&c);
                    Ok(hyper::body::Frame::data(c))
                }
                Err(e) => {
                    t.failure = Some(e.to_string());
                    Err(e)
                }
            }
        });
        let payload = http_body_util::StreamBody::new(frames).boxed_unsync();
        let url = self
            .bucket()?
            .put_object(self.creds(), &object)
            .sign(SIGNED_FOR);
        let req = request(&http::Method::PUT, &url, &[], len, payload)?;
        let sent = self.send_stream(req, "a write").await;
        let (md5, size, failure) = {
            let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
            let t = std::mem::take(&mut *t);
            (<[u8; 16]>::from(t.md5.finalize()), t.size, t.failure)
        };
        let res = match (sent, failure) {
            (_, Some(why)) => return Err(WriteError::Body(why.into())),
            (Err(e), None) => return Err(e.into()),
            (Ok(res), None) => res,
        };
        let etag = res
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_matches('"')
            .to_ascii_lowercase();
        let is_md5 = etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit());
        if size != len || (is_md5 && etag != hex::encode(md5)) {
            let _ = self.delete_object(&object).await;
            return Err(WriteError::Io(io::Error::other(format!(
                "the S3 service stored other bytes than were sent ({size} of {len} bytes, ETag \
                 {etag}, MD5 {})",
                hex::encode(md5)
            ))));
        }
        Ok(Written { size, md5 })
    }

    async fn delete_object(&self, object: &str) -> io::Result<()> {
        let url = self
            .bucket()?
            .delete_object(self.creds(), object)
            .sign(SIGNED_FOR);
        match self
            .send(http::Method::DELETE, url, &[], Bytes::new(), "a removal")
            .await
        {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        }
    }

    async fn create_upload(&self, object: &str) -> io::Result<String> {
        let url = self
            .bucket()?
            .create_multipart_upload(self.creds(), object)
            .sign(SIGNED_FOR);
        let res = self
            .send(
                http::Method::POST,
                url,
                &[],
                Bytes::new(),
                "a multipart start",
            )
            .await?;
        let body = read_limited(res.into_body(), 1 << 20).await?;
        let text = String::from_utf8_lossy(&body);
        let parsed = rusty_s3::actions::CreateMultipartUpload::parse_response(&text)
            .map_err(|e| io::Error::other(format!("CreateMultipartUpload answer: {e}")))?;
        Ok(parsed.upload_id().to_string())
    }

    async fn upload_part(
        &self,
        object: &str,
        upload_id: &str,
        number: u16,
        bytes: Bytes,
    ) -> io::Result<String> {
        let url = self
            .bucket()?
            .upload_part(self.creds(), object, number, upload_id)
            .sign(SIGNED_FOR);
        let hashed = bytes.clone();
        let md5 = tokio::task::spawn_blocking(move || Md5::digest(&hashed))
            .await
            .map_err(io::Error::other)?;
        let headers = [(
            http::HeaderName::from_static("content-md5"),
            base64::engine::general_purpose::STANDARD.encode(md5),
        )];
        let res = self
            .send(http::Method::PUT, url, &headers, bytes, "a part write")
            .await?;
        res.headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| io::Error::other("UploadPart answered without an ETag"))
    }

    async fn complete_upload(
        &self,
        object: &str,
        upload_id: &str,
        etags: &[String],
    ) -> io::Result<()> {
        let action = self.bucket()?.complete_multipart_upload(
            self.creds(),
            object,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let res = self
            .send(
                http::Method::POST,
                url,
                &[],
                Bytes::from(body),
                "a multipart completion",
            )
            .await?;
        // S3 may answer 200 and still report an error in the body.
        let body = read_limited(res.into_body(), 1 << 20).await?;
        if body.windows(7).any(|w| w == b"<Error>") {
            let (code, message) = error_of(&body);
            return Err(unavailable(format!(
                "the S3 service at {} refused a multipart completion: {code}: {message}",
                self.inner.endpoint
            )));
        }
        Ok(())
    }

    async fn abort_upload(&self, object: &str, upload_id: &str) -> io::Result<()> {
        let url = self
            .bucket()?
            .abort_multipart_upload(self.creds(), object, upload_id)
            .sign(SIGNED_FOR);
        match self
            .send(
                http::Method::DELETE,
                url,
                &[],
                Bytes::new(),
                "a multipart abort",
            )
            .await
        {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        }
    }

    /// Uploads in progress under doska's prefix: (key, upload id, initiated).
    async fn list_uploads(&self) -> io::Result<Vec<(String, String, String)>> {
        let bucket = self.bucket()?;
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        loop {
            // Sorted by name, as the signature needs.
            let mut query = vec![("prefix", PREFIX), ("uploads", "")];
            if !key_marker.is_empty() {
                query.push(("key-marker", key_marker.as_str()));
                query.push(("upload-id-marker", id_marker.as_str()));
            }
            query.sort();
            let url = rusty_s3::signing::sign(
                &jiff::Timestamp::now(),
                rusty_s3::Method::Get,
                bucket.base_url().clone(),
                self.inner.credentials.key(),
                self.inner.credentials.secret(),
                None,
                bucket.region(),
                SIGNED_FOR.as_secs(),
                query.iter().copied(),
                std::iter::empty(),
            );
            let res = self
                .send(
                    http::Method::GET,
                    url,
                    &[],
                    Bytes::new(),
                    "a multipart listing",
                )
                .await?;
            let body = read_limited(res.into_body(), 16 << 20).await?;
            let page = UploadsPage::parse(&body)?;
            out.extend(page.uploads);
            match page.next {
                Some((k, u)) if !k.is_empty() => (key_marker, id_marker) = (k, u),
                _ => return Ok(out),
            }
        }
    }

    /// When the last part of an upload was written (RFC 3339), if it has parts.
    async fn last_part_at(&self, object: &str, upload_id: &str) -> io::Result<Option<String>> {
        let url = self
            .bucket()?
            .list_parts(self.creds(), object, upload_id)
            .sign(SIGNED_FOR);
        let res = self
            .send(http::Method::GET, url, &[], Bytes::new(), "a part listing")
            .await?;
        let body = read_limited(res.into_body(), 16 << 20).await?;
        let parsed = rusty_s3::actions::ListParts::parse_response(&String::from_utf8_lossy(&body))
            .map_err(|e| io::Error::other(format!("ListParts answer: {e}")))?;
        Ok(parsed.parts.into_iter().map(|p| p.last_modified).max())
    }
}

/// Whether an S3 timestamp (RFC 3339) is at least `age` ago; unreadable ones count as old.
fn older(at: &str, age: Duration) -> bool {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(t) => chrono::Utc::now().signed_duration_since(t) >= age,
        Err(_) => true,
    }
}

/// Reads a small answer body whole (error documents, XML listings), up to `limit` bytes.
async fn read_limited(mut body: Incoming, limit: usize) -> io::Result<Bytes> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| unavailable(format!("the S3 service's answer broke: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(io::Error::other("the S3 service's answer is too long"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// A multipart upload being written; aborted when dropped before it completes (a failed body, a
/// cancelled request).
struct PendingUpload {
    upstream: Upstream,
    object: String,
    upload_id: String,
    in_flight: futures_util::stream::FuturesOrdered<tokio::task::JoinHandle<io::Result<String>>>,
    etags: Vec<String>,
    done: bool,
}

impl PendingUpload {
    /// Sends the next part, waiting first while [`PARTS_IN_FLIGHT`] are on their way.
    async fn send(&mut self, bytes: Bytes) -> io::Result<()> {
        if self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.settle_one().await?;
        }
        let number = self.etags.len() + self.in_flight.len() + 1;
        let number = u16::try_from(number)
            .ok()
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| io::Error::other("the object is too large for 10,000 parts"))?;
        let (upstream, object, id) = (
            self.upstream.clone(),
            self.object.clone(),
            self.upload_id.clone(),
        );
        self.in_flight.push_back(tokio::spawn(async move {
            upstream.upload_part(&object, &id, number, bytes).await
        }));
        Ok(())
    }

    async fn settle_one(&mut self) -> io::Result<()> {
        if let Some(sent) = self.in_flight.next().await {
            self.etags.push(sent.map_err(io::Error::other)??);
        }
        Ok(())
    }

    async fn complete(mut self) -> io::Result<()> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        self.upstream
            .complete_upload(&self.object, &self.upload_id, &self.etags)
            .await?;
        self.done = true;
        Ok(())
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (upstream, object, id) = (
            self.upstream.clone(),
            std::mem::take(&mut self.object),
            std::mem::take(&mut self.upload_id),
        );
        let in_flight = std::mem::take(&mut self.in_flight);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                // Parts still on their way may land after an abort: let them finish first.
                let _ = in_flight.collect::<Vec<_>>().await;
                if let Err(e) = upstream.abort_upload(&object, &id).await {
                    tracing::warn!(error = %e, "aborting an S3 multipart upload failed; orphan cleanup will retry");
                }
            });
        }
    }
}

#[async_trait::async_trait]
impl Backend for Upstream {
    /// Streams the body into parts of [`PART_SIZE`]: one PUT when it fits one part, else a
    /// multipart upload with up to [`PARTS_IN_FLIGHT`] parts on their way while the next fills.
    /// Each request carries its bytes' MD5 (`Content-MD5`), so the service refuses what arrived
    /// damaged. On any failure or cancellation the upload is aborted and nothing is kept.
    async fn write(
        &self,
        key: &BlobKey,
        mut body: ByteStream,
        limit: Option<u64>,
    ) -> Result<Written, WriteError> {
        let object = object_key(key);
        let mut md5 = Md5::new();
        let mut size = 0u64;
        // Each part fills one allocation of its own (a part ends with the chunk that reaches
        // PART_SIZE), handed to hyper as it is.
        let part_buffer = || BytesMut::with_capacity(PART_SIZE + PART_SLACK);
        let mut buf = BytesMut::new();
        let mut upload: Option<PendingUpload> = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(WriteError::Body)?;
            size += chunk.len() as u64;
            if limit.is_some_and(|l| size > l) {
                return Err(WriteError::TooLarge);
            }
            md5.update(&chunk);
            if buf.capacity() - buf.len() < chunk.len() && buf.len() + chunk.len() > SMALL_BODY {
                let mut bigger = part_buffer();
                bigger.extend_from_slice(&buf);
                buf = bigger;
            }
            buf.extend_from_slice(&chunk);
            if buf.len() >= PART_SIZE {
                let part = std::mem::replace(&mut buf, part_buffer()).freeze();
                let pending = match &mut upload {
                    Some(p) => p,
                    None => upload.insert(PendingUpload {
                        upstream: self.clone(),
                        upload_id: self.create_upload(&object).await?,
                        object: object.clone(),
                        in_flight: Default::default(),
                        etags: Vec::new(),
                        done: false,
                    }),
                };
                pending.send(part).await?;
            }
        }
        let md5: [u8; 16] = md5.finalize().into();
        match upload {
            None => self.put_object(&object, buf.freeze(), &md5).await?,
            Some(mut pending) => {
                if !buf.is_empty() {
                    pending.send(buf.freeze()).await?;
                }
                pending.complete().await?;
            }
        }
        Ok(Written { size, md5 })
    }

    /// A body longer than one part whose length was declared streams on in one PUT of that length:
    /// no part buffers, no multipart bookkeeping upstream. Its MD5 is computed on the way and
    /// checked against the ETag the service answers (when that is an MD5: not with SSE-KMS); a
    /// body that breaks or runs longer fails the PUT, and S3 keeps nothing of a failed PUT.
    async fn write_sized(
        &self,
        key: &BlobKey,
        body: ByteStream,
        limit: Option<u64>,
        len: Option<u64>,
    ) -> Result<Written, WriteError> {
        match len {
            Some(n) if n > PART_SIZE as u64 && n <= MAX_SINGLE_PUT => {
                if limit.is_some_and(|l| n > l) {
                    return Err(WriteError::TooLarge);
                }
                self.put_streamed(key, body, n).await
            }
            _ => self.write(key, body, limit).await,
        }
    }

    async fn write_small(&self, key: &BlobKey, bytes: Bytes) -> io::Result<()> {
        let md5 = Md5::digest(&bytes);
        self.put_object(&object_key(key), bytes, &md5).await
    }

    async fn read(&self, key: &BlobKey, range: Option<(u64, u64)>) -> io::Result<ByteStream> {
        self.open(key, range).await
    }

    /// The first [`EAGER_PARTS`] blobs the range touches are opened (their GETs answered) before
    /// this returns, the rest when the read reaches them: an overwrite that removes the parts
    /// meanwhile cuts a read of a very long object short (an error, never wrong bytes).
    async fn read_parts(
        &self,
        parts: &[(BlobKey, u64)],
        range: Option<(u64, u64)>,
    ) -> io::Result<ByteStream> {
        let mut pieces = super::backend::pieces(parts, range);
        let later = pieces.split_off(pieces.len().min(EAGER_PARTS));
        let opened = futures_util::future::try_join_all(
            pieces
                .iter()
                .map(|(key, range)| self.open(key, Some(*range))),
        )
        .await?;
        let this = self.clone();
        let rest = futures_util::stream::iter(later)
            .then(move |(key, range)| {
                let this = this.clone();
                async move { this.open(&key, Some(range)).await }
            })
            .map_err(|e| Box::new(e) as BoxError)
            .try_flatten();
        Ok(Box::pin(
            futures_util::stream::iter(opened).flatten().chain(rest),
        ))
    }

    async fn remove(&self, key: &BlobKey) -> io::Result<()> {
        self.delete_object(&object_key(key)).await
    }

    async fn older_than(&self, age: Duration) -> io::Result<Vec<BlobKey>> {
        let bucket = self.bucket()?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = bucket.list_objects_v2(self.creds());
            action.with_prefix(PREFIX);
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let res = self
                .send(http::Method::GET, url, &[], Bytes::new(), "a listing")
                .await?;
            let body = read_limited(res.into_body(), 64 << 20).await?;
            let page =
                rusty_s3::actions::ListObjectsV2::parse_response(&String::from_utf8_lossy(&body))
                    .map_err(|e| io::Error::other(format!("ListObjectsV2 answer: {e}")))?;
            for c in page.contents {
                let name = c.key.rsplit('/').next().unwrap_or_default();
                let Some(key) = Disk::parse_name(name) else {
                    continue;
                };
                if object_key(&key) == c.key
                    && c.last_modified.as_deref().is_none_or(|at| older(at, age))
                {
                    out.push(key);
                }
            }
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Aborts multipart uploads under doska's prefix started at least `age` ago whose last part (if
    /// any) is that old too: a crash left them (a live write sends a part every few seconds).
    async fn sweep_incomplete(&self, age: Duration) -> io::Result<usize> {
        let mut aborted = 0;
        for (object, id, initiated) in self.list_uploads().await? {
            if !older(&initiated, age) {
                continue;
            }
            if let Some(last) = self.last_part_at(&object, &id).await?
                && !older(&last, age)
            {
                continue;
            }
            self.abort_upload(&object, &id).await?;
            aborted += 1;
        }
        Ok(aborted)
    }
}

mod uploads;
use uploads::UploadsPage;

#[cfg(test)]
mod tests;
