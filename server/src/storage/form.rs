//! A streaming `multipart/form-data` reader for uploads as storage-js sends them (text fields such as
//! `cacheControl` and `metadata`, then one file part): the fields before the file are collected (at
//! most 64 KiB each), the file part is handed on as a stream that ends at the next boundary, so memory
//! stays flat whatever the file's size. Rejects bodies without a file part, malformed part headers and
//! oversized fields.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;

use super::backend::ByteStream;

const MAX_FIELD: usize = 64 * 1024;
const MAX_HEADERS: usize = 16 * 1024;

#[derive(Debug)]
pub enum FormError {
    NoBoundary,
    NoFile,
    Malformed(&'static str),
    FieldTooLarge,
    Body(String),
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormError::NoBoundary => f.write_str("multipart/form-data without a boundary"),
            FormError::NoFile => f.write_str("the form has no file part"),
            FormError::Malformed(w) => write!(f, "malformed multipart body: {w}"),
            FormError::FieldTooLarge => f.write_str("a form field is larger than 64 KiB"),
            FormError::Body(e) => write!(f, "reading the request body failed: {e}"),
        }
    }
}

impl std::error::Error for FormError {}

/// The form's text fields and its file.
pub struct FormUpload {
    pub fields: HashMap<String, String>,
    pub content_type: Option<String>,
    pub file: ByteStream,
}

/// The boundary of a `multipart/form-data; boundary=…` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

struct Reader {
    body: ByteStream,
    buf: BytesMut,
    eof: bool,
}

impl Reader {
    /// Reads more of the body into the buffer; false at its end.
    async fn fill(&mut self) -> Result<bool, FormError> {
        if self.eof {
            return Ok(false);
        }
        match self.body.next().await {
            Some(Ok(chunk)) => {
                self.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            Some(Err(e)) => Err(FormError::Body(e.to_string())),
            None => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// Bytes up to `needle` (consumed with it), reading on as needed, at most `limit` bytes.
    async fn until(&mut self, needle: &[u8], limit: usize) -> Result<Bytes, FormError> {
        // Where a match could still start: earlier bytes were searched already.
        let mut from = 0;
        loop {
            if let Some(i) = find(&self.buf[from..], needle) {
                let out = self.buf.split_to(from + i).freeze();
                self.buf.advance(needle.len());
                return Ok(out);
            }
            from = self.buf.len().saturating_sub(needle.len() - 1);
            if self.buf.len() > limit + needle.len() {
                return Err(FormError::FieldTooLarge);
            }
            if !self.fill().await? {
                return Err(FormError::Malformed("unexpected end"));
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads the form up to its file part; the file streams from the returned value.
pub async fn read(body: ByteStream, boundary: &str) -> Result<FormUpload, FormError> {
    let mut r = Reader {
        body,
        buf: BytesMut::new(),
        eof: false,
    };
    let first = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}").into_bytes();
    r.until(first.as_bytes(), MAX_FIELD).await?;
    let mut fields = HashMap::new();
    loop {
        // After a boundary: "--" ends the form, "\r\n" starts a part.
        while r.buf.len() < 2 {
            if !r.fill().await? {
                return Err(FormError::Malformed("unexpected end"));
            }
        }
        if &r.buf[..2] == b"--" {
            return Err(FormError::NoFile);
        }
        r.until(b"\r\n", 64).await?;
        let head = r.until(b"\r\n\r\n", MAX_HEADERS).await?;
        let head = std::str::from_utf8(&head).map_err(|_| FormError::Malformed("headers"))?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            if k == "content-disposition" {
                for p in v.split(';').skip(1) {
                    if let Some((pk, pv)) = p.split_once('=') {
                        let pv = pv.trim().trim_matches('"').to_string();
                        match pk.trim() {
                            "name" => name = Some(pv),
                            "filename" => filename = Some(pv),
                            _ => {}
                        }
                    }
                }
            } else if k == "content-type" {
                content_type = Some(v.trim().to_string());
            }
        }
        if filename.is_none() {
            let value = r.until(&delim, MAX_FIELD).await?;
            let value = String::from_utf8_lossy(&value).into_owned();
            fields.insert(name.unwrap_or_default(), value);
            continue;
        }
        let file = Box::pin(futures_util::stream::unfold(
            (r, delim, false),
            |(mut r, delim, done)| async move {
                if done {
                    return None;
                }
                let mut from = 0;
                loop {
                    if let Some(i) = find(&r.buf[from..], &delim).map(|i| from + i) {
                        let out = r.buf.split_to(i).freeze();
                        return Some((Ok(out), (r, delim, true)));
                    }
                    // Everything but a possible partial delimiter at the end may go out now.
                    let keep = delim.len() - 1;
                    if r.buf.len() > keep + 64 * 1024 {
                        let n = r.buf.len() - keep;
                        let out = r.buf.split_to(n).freeze();
                        return Some((Ok(out), (r, delim, false)));
                    }
                    from = r.buf.len().saturating_sub(keep);
                    match r.fill().await {
                        Ok(true) => continue,
                        Ok(false) => {
                            let e: crate::http::body::BoxError =
                                "multipart body ended inside the file".into();
                            return Some((Err(e), (r, delim, true)));
                        }
                        Err(e) => return Some((Err(e.to_string().into()), (r, delim, true))),
                    }
                }
            },
        ));
        return Ok(FormUpload {
            fields,
            content_type,
            file,
        });
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

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
    }
}
