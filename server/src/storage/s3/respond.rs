//! The S3 listener's own answers around s3s: the request id on every response, the XML error for
//! a panic, and refusing presigned URLs whose expiry AWS would refuse.

/// Names every answer with a fresh request id (`x-amz-request-id`), and writes it into an error's
/// XML as `<RequestId>` too, as S3 does (s3s leaves both out).
pub(super) fn with_request_id(mut res: http::Response<s3s::Body>) -> http::Response<s3s::Body> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_ascii_uppercase();
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-amz-request-id", v);
    }
    if res.status().as_u16() < 400 {
        return res;
    }
    let Some(body) = res.body().bytes() else {
        return res;
    };
    let Some(end) = body.windows(8).rposition(|w| w == b"</Error>") else {
        return res;
    };
    if body.windows(11).any(|w| w == b"<RequestId>") {
        return res;
    }
    let mut named = Vec::with_capacity(body.len() + 48);
    named.extend_from_slice(&body[..end]);
    named.extend_from_slice(format!("<RequestId>{id}</RequestId>").as_bytes());
    named.extend_from_slice(&body[end..]);
    if res.headers().contains_key(http::header::CONTENT_LENGTH) {
        res.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(named.len()),
        );
    }
    *res.body_mut() = s3s::Body::from(bytes::Bytes::from(named));
    res
}

/// A request that asked `Expect: 100-continue` and was refused: its body may not have been read (s3s
/// refuses many requests before it reads the body, and then hyper sends no `100 Continue`), yet a
/// client that stopped waiting sends it anyway — on a kept-alive connection those bytes would open
/// the next request (`sHEAD …`, refused as SignatureDoesNotMatch). Such answers close the
/// connection instead.
pub(super) fn close_after_refusal(
    expected_continue: bool,
    mut res: http::Response<s3s::Body>,
) -> http::Response<s3s::Body> {
    if expected_continue && res.status().as_u16() >= 400 {
        res.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    res
}

/// S3's InternalError, for an operation that panicked (the cause is logged, never sent).
pub(super) fn panicked(panic: &(dyn std::any::Any + Send)) -> http::Response<s3s::Body> {
    let what = crate::http::door::panic_message(panic);
    tracing::error!(panic = %what, "S3 operation panicked");
    xml_error(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "We encountered an internal error. Please try again.",
    )
}

/// A presigned URL may live at most 7 days (604,800 s), and not less than nothing: AWS refuses
/// other `X-Amz-Expires` values with 403 before it looks at the signature (s3s alone would accept
/// a longer one).
pub(super) fn presign_expiry_refused(uri: &http::Uri) -> Option<http::Response<s3s::Body>> {
    let expires = crate::http::query::pairs(uri.query()?)
        .into_iter()
        .find(|(k, _)| k == "X-Amz-Expires")?
        .1;
    match expires.parse::<u32>() {
        Ok(secs) if secs <= 604_800 => None,
        _ => Some(xml_error(
            http::StatusCode::FORBIDDEN,
            "AccessDenied",
            "X-Amz-Expires must be between 0 and 604800 seconds",
        )),
    }
}

/// An S3 error answer built outside s3s (static texts only: nothing to escape).
pub(super) fn xml_error(
    status: http::StatusCode,
    code: &str,
    message: &str,
) -> http::Response<s3s::Body> {
    let mut res = http::Response::new(s3s::Body::from(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message></Error>"
    )));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    res
}
