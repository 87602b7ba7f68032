//! Property tests of what the storage API reads from a client: TUS `Upload-Metadata` renders and
//! parses back; `multipart/form-data` bodies built from generated fields and files (cut into
//! random chunks) read back exactly, and mangled ones end in a form error — a 400 in storage's
//! `{statusCode, error, message}` shape — never a panic; routes, object keys, bucket ids, byte
//! ranges and bucket settings never panic, refusals are 4xx, and ranges stay inside the object.

use std::collections::HashMap;

use base64::Engine;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::Method;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::api::ApiError;
use super::backend::ByteStream;
use super::core::{ByteRange, check_bucket_name, check_key, mime_allowed};
use super::form;
use super::http::bucket_spec;
use super::route::{Route, route};
use super::tus::metadata;

fn assert_client_error(e: &ApiError) {
    let (status, code, message) = e.parts();
    assert!(status.is_client_error(), "{status} for {e:?}");
    assert!(!code.is_empty() && !message.is_empty(), "{e:?}");
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn chunked(body: &[u8], size: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, crate::http::body::BoxError>> = body
        .chunks(size.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

/// A form as storage-js sends it: text fields, then one file part.
fn form_body(boundary: &str, fields: &[(String, String)], file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"\"; filename=\"blob\"\r\nContent-Type: image/png\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// A form as read: its fields, and its file's bytes or why they could not be read.
type ReadForm = (HashMap<String, String>, Result<Vec<u8>, String>);

/// Reads a form and its whole file, or the form error.
fn read_form(body: &[u8], boundary: &str, chunk: usize) -> Result<ReadForm, form::FormError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let upload = form::read(chunked(body, chunk), boundary).await?;
        let file = upload
            .file
            .try_collect::<Vec<Bytes>>()
            .await
            .map(|parts| parts.concat())
            .map_err(|e| e.to_string());
        Ok((upload.fields, file))
    })
}

fn boundary() -> impl Strategy<Value = String> {
    "[A-Za-z0-9'()+_,./:=?-]{1,30}".prop_filter("no trailing space", |b| !b.ends_with(' '))
}

const ROUTE_WORDS: &[&str] = &[
    "object",
    "bucket",
    "upload",
    "resumable",
    "sign",
    "public",
    "authenticated",
    "info",
    "list",
    "list-v2",
    "move",
    "copy",
    "empty",
    "b",
    "k",
    "",
    "..",
    ".",
    "a b",
    "\0",
    "é",
];

/// Bucket ids that are not route words (`object/sign/…` is signing, as in Supabase).
fn bucket() -> impl Strategy<Value = String> {
    "[a-z0-9_.-]{1,12}".prop_filter("not a route word", |b| {
        !matches!(
            b.as_str(),
            "sign"
                | "public"
                | "authenticated"
                | "info"
                | "list"
                | "list-v2"
                | "upload"
                | "move"
                | "copy"
        )
    })
}

proptest! {
    #![proptest_config(crate::props::budget(256))]

    #[test]
    fn tus_metadata_renders_and_parses_back(
        pairs in prop::collection::hash_map("[A-Za-z0-9_.-]{1,12}", "\\PC{0,24}", 0..6),
    ) {
        let header = pairs
            .iter()
            .map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k} {}", b64(v)) })
            .collect::<Vec<_>>()
            .join(",");
        prop_assert_eq!(metadata(&header), pairs);
    }

    #[test]
    fn tus_metadata_garbage_never_panics(s in "[a-zA-Z0-9+/= ,\u{0}é-]{0,60}") {
        let _ = metadata(&s);
    }

    #[test]
    fn forms_read_back_exactly(
        boundary in boundary(),
        fields in prop::collection::vec(("[a-zA-Z]{1,8}", "[ -~]{0,40}"), 0..4),
        file in prop::collection::vec(any::<u8>(), 0..3000),
        chunk in 1usize..700,
    ) {
        let delimiter = format!("\r\n--{boundary}");
        prop_assume!(!file.windows(delimiter.len()).any(|w| w == delimiter.as_bytes()));
        prop_assume!(fields.iter().all(|(_, v)| !v.contains(&delimiter[2..])));
        let body = form_body(&boundary, &fields, &file);
        let (got, bytes) = read_form(&body, &boundary, chunk).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // A repeated name keeps its last value.
        let want: HashMap<String, String> = fields.into_iter().collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(bytes, Ok(file));
    }

    /// A form cut short, with a byte changed or with bytes spliced in: read or refused with a
    /// 400, never a panic.
    #[test]
    fn mangled_forms_are_refused_not_panicked(
        boundary in boundary(),
        file in prop::collection::vec(any::<u8>(), 0..600),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        splice in prop::collection::vec(any::<u8>(), 0..40),
        how in 0u8..3,
        chunk in 1usize..300,
    ) {
        let mut body = form_body(&boundary, &[("cacheControl".into(), "3600".into())], &file);
        match how {
            0 => body.truncate(cut.index(body.len() + 1)),
            1 => {
                let i = flip.index(body.len());
                body[i] = byte;
            }
            _ => {
                let i = cut.index(body.len() + 1);
                body.splice(i..i, splice);
            }
        }
        if let Err(e) = read_form(&body, &boundary, chunk) {
            assert_client_error(&ApiError::Form(e));
        }
    }

    #[test]
    fn boundaries_never_panic(s in "\\PC{0,60}") {
        let _ = form::boundary(&s);
        let _ = form::boundary(&format!("multipart/form-data; boundary={s}"));
    }

    #[test]
    fn object_routes_carry_bucket_and_key(bucket in bucket(), key in "[^\u{0}]{1,40}") {
        let path = format!("object/{bucket}/{key}");
        prop_assert_eq!(route(&Method::GET, &path), Some(Route::Get(bucket.clone(), key.clone())));
        prop_assert_eq!(route(&Method::PUT, &path), Some(Route::Upload(bucket.clone(), key.clone(), true)));
        prop_assert_eq!(route(&Method::DELETE, &path), Some(Route::RemoveOne(bucket.clone(), key.clone())));
        let info = format!("object/info/{bucket}/{key}");
        prop_assert_eq!(route(&Method::GET, &info), Some(Route::Info(bucket, key)));
    }

    #[test]
    fn route_soup_never_panics(
        words in prop::collection::vec(prop::sample::select(ROUTE_WORDS), 0..7),
        method in prop::sample::select(vec![
            Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE,
            Method::PATCH, Method::OPTIONS,
        ]),
        lead in prop::bool::ANY,
    ) {
        let path = format!("{}{}", if lead { "/" } else { "" }, words.join("/"));
        let _ = route(&method, &path);
    }

    #[test]
    fn keys_and_bucket_ids_are_checked_not_panicked(s in prop_oneof!["\\PC{0,40}", "[\u{0}-\u{7f}]{0,40}", "[a-z]{1000,1030}"]) {
        if let Err(e) = check_key(&s) {
            assert_client_error(&ApiError::Storage(e));
            prop_assert!(s.is_empty() || s.len() > 1024 || s.contains('\0'));
        }
        if let Err(e) = check_bucket_name(&s) {
            assert_client_error(&ApiError::Storage(e));
        }
    }

    #[test]
    fn byte_ranges_render_parse_and_stay_inside(
        first in 0u64..5000,
        len in prop::option::of(0u64..5000),
        suffix in prop::bool::ANY,
        size in 0u64..6000,
    ) {
        let (text, range) = if suffix {
            let n = len.unwrap_or(first);
            (format!("bytes=-{n}"), ByteRange::Suffix { len: n })
        } else {
            let last = len.map(|l| first + l);
            let text = format!("bytes={first}-{}", last.map_or(String::new(), |l| l.to_string()));
            (text, ByteRange::From { first, last })
        };
        prop_assert_eq!(ByteRange::parse(&text), Some(range));
        if let Ok((start, n)) = range.resolve(size) {
            prop_assert!(n >= 1 && start.checked_add(n).is_some_and(|end| end <= size));
        }
    }

    #[test]
    fn byte_range_garbage_never_panics(s in "[bytes=0-9, -]{0,30}", size in any::<u64>()) {
        if let Some(r) = ByteRange::parse(&s)
            && let Ok((start, n)) = r.resolve(size)
        {
            prop_assert!(n >= 1 && start.checked_add(n).is_some_and(|end| end <= size));
        }
    }

    /// Bucket settings as JSON: accepted, or a 400; an accepted size limit is positive.
    #[test]
    fn bucket_settings_are_checked(
        limit in prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            "[0-9]{1,22}( ?[kKmMgG]?[iI]?[bB]?)".prop_map(Value::String),
            prop::sample::select(vec![
                "0", "0K", "9223372036854775807", "9223372036854775808", "18446744073709551615",
                "8589934592G", "17179869184G", "16EB",
            ])
            .prop_map(|s| json!(s)),
            "\\PC{0,10}".prop_map(Value::String),
            any::<bool>().prop_map(Value::Bool),
        ],
        mimes in prop_oneof![
            Just(Value::Null),
            prop::collection::vec("[a-z*]{0,6}/[a-z*+.-]{0,8}", 0..3).prop_map(|m| json!(m)),
            "\\PC{0,10}".prop_map(Value::String),
        ],
        mime in "[a-z]{0,6}/[a-z+.-]{0,8}(; ?charset=[a-z0-9-]{0,8})?",
    ) {
        match bucket_spec(&json!({"file_size_limit": limit, "allowed_mime_types": mimes})) {
            Ok(spec) => {
                if let Some(Some(l)) = spec.file_size_limit {
                    prop_assert!(l > 0, "limit {l} from {limit}");
                }
                if let Some(Some(allowed)) = spec.allowed_mime_types {
                    let _ = mime_allowed(&allowed, &mime);
                }
            }
            Err(e) => assert_client_error(&e),
        }
    }
}
