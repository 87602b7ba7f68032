//! `multipart/form-data` uploads as storage-js sends them (text fields such as `cacheControl` and
//! `metadata`, then one file part), parsed by `multer`: the fields before the file are collected (at
//! most 64 KiB each), the file part is handed on as a stream that ends at the next boundary, so memory
//! stays flat whatever the file's size. Until the file starts, at most one field's worth of body
//! (value and part headers) is read ahead, so neither a huge field nor endless part headers pile up
//! in memory. Rejects bodies without a file part, malformed parts and oversized fields.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::TryStreamExt;

use super::backend::ByteStream;

const MAX_FIELD: usize = 64 * 1024;
const MAX_HEADERS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("the form has no file part")]
    NoFile,
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    #[error("a form field is larger than 64 KiB")]
    FieldTooLarge,
    #[error("reading the request body failed: {0}")]
    Body(String),
}

/// The form's text fields and its file.
pub struct FormUpload {
    pub fields: HashMap<String, String>,
    pub content_type: Option<String>,
    pub file: ByteStream,
}

/// The boundary of a `multipart/form-data; boundary=…` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    multer::parse_boundary(content_type)
        .ok()
        .filter(|b| !b.is_empty())
}

/// The body stopped because a part (headers and value) before the file outgrew its budget.
#[derive(Debug, thiserror::Error)]
#[error("form part too large")]
struct OverBudget;

fn form_error(e: multer::Error) -> FormError {
    match e {
        multer::Error::StreamReadFailed(e) if e.is::<OverBudget>() => FormError::FieldTooLarge,
        multer::Error::StreamReadFailed(e) => FormError::Body(e.to_string()),
        multer::Error::FieldSizeExceeded { .. } => FormError::FieldTooLarge,
        e => FormError::Malformed(e.to_string()),
    }
}

/// The body as multer reads it: one chunk per poll (multer pulls until the stream is pending, which
/// a fast client's body never is, so unpaced it would buffer the whole file), and, until the file
/// starts, no more than `budget` bytes per part.
struct Paced {
    body: ByteStream,
    budget: Arc<AtomicI64>,
    yielded: bool,
}

impl futures_util::Stream for Paced {
    type Item = Result<bytes::Bytes, crate::http::body::BoxError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if std::mem::take(&mut self.yielded) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.budget.load(Ordering::Relaxed) < 0 {
            return Poll::Ready(Some(Err(Box::new(OverBudget))));
        }
        let item = self.body.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &item {
            self.budget.fetch_sub(chunk.len() as i64, Ordering::Relaxed);
            self.yielded = true;
        }
        item
    }
}

/// Reads the form up to its file part; the file streams from the returned value.
pub async fn read(body: ByteStream, boundary: &str) -> Result<FormUpload, FormError> {
    // Bytes the parser may still pull before the next part is handed to us; unlimited once the
    // file streams (its size is the upload's business).
    const PART_BUDGET: i64 = (MAX_FIELD + MAX_HEADERS) as i64;
    let budget = Arc::new(AtomicI64::new(PART_BUDGET));
    let limited = Paced {
        body,
        budget: budget.clone(),
        yielded: false,
    };
    let mut form = multer::Multipart::new(limited, boundary);
    let mut fields = HashMap::new();
    loop {
        budget.store(PART_BUDGET, Ordering::Relaxed);
        let Some(mut field) = form.next_field().await.map_err(form_error)? else {
            return Err(FormError::NoFile);
        };
        budget.store(PART_BUDGET, Ordering::Relaxed);
        if field.file_name().is_none() {
            let name = field.name().unwrap_or_default().to_owned();
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                if value.len() + chunk.len() > MAX_FIELD {
                    return Err(FormError::FieldTooLarge);
                }
                value.extend_from_slice(&chunk);
            }
            fields.insert(name, String::from_utf8_lossy(&value).into_owned());
            continue;
        }
        budget.store(i64::MAX, Ordering::Relaxed);
        let content_type = field
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned());
        let file = field.map_err(|e| -> crate::http::body::BoxError { Box::new(e) });
        return Ok(FormUpload {
            fields,
            content_type,
            file: Box::pin(file),
        });
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::StreamExt;

    use super::*;

    fn chunked(body: &[u8], size: usize) -> ByteStream {
        let chunks: Vec<Result<Bytes, crate::http::body::BoxError>> = body
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn reads_fields_then_streams_the_file_across_chunk_edges() {
        let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"cacheControl\"\r\n\r\n3600\r\n",
        );
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"\"; filename=\"blob\"\r\nContent-Type: image/png\r\n\r\n");
        body.extend_from_slice(&file);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        for size in [1, 7, 4096, 1 << 20] {
            let f = read(chunked(&body, size), "XyZ").await.unwrap();
            assert_eq!(f.fields["cacheControl"], "3600");
            assert_eq!(f.content_type.as_deref(), Some("image/png"));
            let got: Vec<Bytes> = f.file.try_collect().await.unwrap();
            assert_eq!(got.concat(), file, "chunk size {size}");
        }
    }

    #[tokio::test]
    async fn refuses_forms_without_a_file_and_truncated_files() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n";
        assert!(matches!(
            read(chunked(body, 3), "b").await,
            Err(FormError::NoFile)
        ));
        let body = b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nabc";
        let f = read(chunked(body, 3), "b").await.unwrap();
        assert!(f.file.try_collect::<Vec<Bytes>>().await.is_err());
        assert_eq!(
            boundary("multipart/form-data; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(boundary("text/plain"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[tokio::test]
    async fn a_file_from_a_body_that_is_always_ready_streams_in_chunk_sized_pieces() {
        let head = Bytes::from_static(
            b"--b\r\nContent-Disposition: form-data; name=\"\"; filename=\"a\"\r\n\r\n",
        );
        let endless =
            futures_util::stream::iter([Ok(head)]).chain(futures_util::stream::repeat_with(|| {
                Ok(Bytes::from(vec![7u8; 4096]))
            }));
        let f = read(Box::pin(endless), "b").await.unwrap();
        let first: Vec<Bytes> = f.file.take(50).try_collect().await.unwrap();
        assert_eq!(first.len(), 50);
        assert!(first.iter().all(|c| c.len() <= 4096), "no read-ahead");
    }

    #[tokio::test]
    async fn refuses_oversized_fields_and_part_headers_and_garbage() {
        let mut big = b"--b\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_FIELD + 1));
        big.extend_from_slice(b"\r\n--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nabc\r\n--b--\r\n");
        for size in [100, 1 << 20] {
            assert!(
                matches!(
                    read(chunked(&big, size), "b").await,
                    Err(FormError::FieldTooLarge)
                ),
                "chunk size {size}"
            );
        }
        // Part headers that never end are not buffered without bound.
        let mut endless =
            b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\nX-Pad: "
                .to_vec();
        endless.extend(std::iter::repeat_n(b'y', 1 << 20));
        assert!(matches!(
            read(chunked(&endless, 1000), "b").await,
            Err(FormError::FieldTooLarge)
        ));
        let garbage = b"--b\r\nno headers here\r\n\r\nabc\r\n--b--\r\n";
        assert!(read(chunked(garbage, 5), "b").await.is_err());
    }
}
