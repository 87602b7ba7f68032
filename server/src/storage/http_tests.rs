//! The storage API's pure helpers: list-v2 keys, size units, error statuses, bucket settings.

use super::*;

#[test]
fn list_v2_keys_are_the_listed_level_segment() {
    for (prefix, name, key) in [
        ("", "testpath/", "testpath"),
        ("testpath", "testpath/a.jpg", "testpath"),
        ("testpath/", "testpath/a.jpg", "a.jpg"),
        ("school-1/", "school-1/unit 1/", "unit 1"),
        ("a/b/", "a/b/c/d.txt", "c"),
        ("", "top.txt", "top.txt"),
    ] {
        assert_eq!(v2_key(prefix, name), key, "{prefix:?} {name:?}");
    }
}

#[test]
fn size_limits_are_decimal_as_in_supabase() {
    for (text, bytes) in [
        ("20mb", Some(20_000_000)),
        ("1kb", Some(1000)),
        ("1KB", Some(1000)),
        ("2 GB", Some(2_000_000_000)),
        ("1.5mb", Some(1_500_000)),
        ("512", Some(512)),
        ("512b", Some(512)),
        ("1MiB", Some(1_048_576)),
        ("", None),
        ("mb", None),
        ("0", None),
        ("-1mb", None),
        ("1tb", None),
        ("1.2.3kb", None),
        ("20 megabytes", None),
        ("99999999999gb", None),
    ] {
        assert_eq!(size_limit(text), bytes, "{text:?}");
    }
}

#[test]
fn errors_have_fixed_statuses() {
    let s = |e: StorageError| ApiError::Storage(e).parts().0;
    assert_eq!(s(StorageError::NoSuchKey), StatusCode::NOT_FOUND);
    assert_eq!(s(StorageError::KeyExists), StatusCode::CONFLICT);
    assert_eq!(
        s(StorageError::TooLarge { limit: 1 }),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        s(StorageError::MimeNotAllowed("x".into())),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(s(StorageError::Denied), StatusCode::FORBIDDEN);
}

/// Found by the bucket-settings property: a size string past i64 became a negative limit
/// (refusing every upload), and "0" a limit of 0 where the number 0 clears the limit.
#[test]
fn size_strings_past_i64_are_refused_and_zero_clears() {
    let limit = |v: &str| bucket_spec(&json!({ "file_size_limit": v })).map(|s| s.file_size_limit);
    assert!(limit("9223372036854775808").is_err());
    assert!(limit("17179869184G").is_err());
    assert_eq!(limit("0").unwrap(), Some(None));
    // Decimal units, as Supabase reads them.
    assert_eq!(limit("10kb").unwrap(), Some(Some(10_000)));
    assert_eq!(limit("9223372036854775807").unwrap(), Some(Some(i64::MAX)));
}
