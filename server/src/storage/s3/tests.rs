use super::*;

#[tokio::test]
async fn a_panicking_operation_is_an_s3_internal_error() {
    use http_body_util::BodyExt;
    let res = panicked(&"operation bug");
    assert_eq!(res.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("<Code>InternalError</Code>"), "{text}");
    assert!(!text.contains("operation bug"), "{text}");
}

#[test]
fn errors_carry_s3_codes() {
    assert_eq!(
        *s3_err(StorageError::NoSuchKey).code(),
        S3ErrorCode::NoSuchKey
    );
    assert_eq!(
        *s3_err(StorageError::Denied).code(),
        S3ErrorCode::AccessDenied
    );
    assert_eq!(
        *s3_err(StorageError::Io(std::io::Error::other("disk"))).code(),
        S3ErrorCode::InternalError
    );
}

#[test]
fn ranges_map() {
    assert_eq!(
        range_of(&Some(dto::Range::Int {
            first: 1,
            last: Some(2)
        })),
        Some(ByteRange::From {
            first: 1,
            last: Some(2)
        })
    );
    assert_eq!(
        range_of(&Some(dto::Range::Suffix { length: 4 })),
        Some(ByteRange::Suffix { len: 4 })
    );
}
