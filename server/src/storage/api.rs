//! What the storage API's routes (`http`) and its resumable uploads (`tus`) share: the error
//! answers, each with a fixed HTTP status and a stable `error` code in storage-js's
//! `{statusCode, error, message}` shape, and the request body as a byte stream.

use futures_util::TryStreamExt;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::{backend::ByteStream, core::StorageError, form};
use crate::http::body::{self, Body, BoxError};

/// The API's errors: each has a fixed HTTP status and a stable `error` code.
#[derive(Debug)]
pub enum ApiError {
    Storage(StorageError),
    NotFound,
    BadRequest(String),
    InvalidJwt(String),
    Form(form::FormError),
    /// A request body of a content type the route does not take.
    Unsupported(String),
    /// A TUS PATCH at another offset than the upload's (which is given).
    OffsetMismatch(u64),
    /// The router turned the request away (body over the limit, a panic).
    Rejected(crate::http::Rejection),
    /// A refusal whose status and code a stage's own error enum fixed (the image render's).
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::Storage(e)
    }
}

impl ApiError {
    pub(super) fn parts(&self) -> (StatusCode, &'static str, String) {
        use StatusCode as S;
        match self {
            ApiError::Storage(e) => {
                let (status, code) = match e {
                    StorageError::NoSuchBucket => (S::NOT_FOUND, "NoSuchBucket"),
                    StorageError::NoSuchKey => (S::NOT_FOUND, "NoSuchKey"),
                    StorageError::NoSuchUpload => (S::NOT_FOUND, "NoSuchUpload"),
                    StorageError::KeyExists => (S::CONFLICT, "Duplicate"),
                    StorageError::BucketExists => (S::CONFLICT, "BucketAlreadyExists"),
                    StorageError::BucketNotEmpty => (S::CONFLICT, "InvalidRequest"),
                    StorageError::Denied => (S::FORBIDDEN, "AccessDenied"),
                    StorageError::MimeNotAllowed(_) => {
                        (S::UNSUPPORTED_MEDIA_TYPE, "InvalidMimeType")
                    }
                    StorageError::InvalidKey(_) => (S::BAD_REQUEST, "InvalidKey"),
                    StorageError::InvalidBucketName(_) => (S::BAD_REQUEST, "InvalidBucketName"),
                    StorageError::InvalidPart(_) | StorageError::InvalidPartOrder => {
                        (S::BAD_REQUEST, "InvalidPart")
                    }
                    StorageError::InvalidRange => (S::RANGE_NOT_SATISFIABLE, "InvalidRange"),
                    StorageError::Conflict => (S::CONFLICT, "ResourceLocked"),
                    StorageError::Body(_) | StorageError::InvalidInput(_) => {
                        (S::BAD_REQUEST, "InvalidRequest")
                    }
                    StorageError::Unavailable(_) => {
                        tracing::warn!(error = %e, "storage request failed");
                        (S::SERVICE_UNAVAILABLE, "ServiceUnavailable")
                    }
                    StorageError::DiskFull => (S::INSUFFICIENT_STORAGE, "InsufficientStorage"),
                    StorageError::Db(db) if e.is_db_unavailable() => {
                        crate::db::outage::unavailable("storage", db);
                        return (
                            S::SERVICE_UNAVAILABLE,
                            "DatabaseUnavailable",
                            "The database is unavailable; retry shortly".into(),
                        );
                    }
                    // Supabase's text, word for word (storage-js's tests and apps compare it);
                    // S3 keeps the core's message, which quotes the limit.
                    StorageError::TooLarge { .. } => {
                        return (
                            S::PAYLOAD_TOO_LARGE,
                            "EntityTooLarge",
                            "The object exceeded the maximum allowed size".into(),
                        );
                    }
                    StorageError::Db(_) | StorageError::Io(_) => {
                        tracing::error!(error = %e, "storage request failed");
                        return (
                            S::INTERNAL_SERVER_ERROR,
                            "InternalError",
                            "Internal error".into(),
                        );
                    }
                };
                (status, code, e.to_string())
            }
            ApiError::NotFound => (S::NOT_FOUND, "not_found", "Route not found".into()),
            ApiError::BadRequest(m) => (S::BAD_REQUEST, "InvalidRequest", m.clone()),
            ApiError::InvalidJwt(m) => (S::BAD_REQUEST, "InvalidJWT", m.clone()),
            ApiError::Form(e) => (S::BAD_REQUEST, "InvalidRequest", e.to_string()),
            ApiError::Unsupported(m) => (S::UNSUPPORTED_MEDIA_TYPE, "InvalidRequest", m.clone()),
            ApiError::Rejected(why @ crate::http::Rejection::TooLarge { .. }) => {
                (S::PAYLOAD_TOO_LARGE, "EntityTooLarge", why.message())
            }
            ApiError::Rejected(why @ crate::http::Rejection::Panicked) => {
                (S::INTERNAL_SERVER_ERROR, "InternalError", why.message())
            }
            ApiError::Refused {
                status,
                code,
                message,
            } => (*status, code, message.clone()),
            ApiError::OffsetMismatch(at) => (
                S::CONFLICT,
                "InvalidUploadOffset",
                format!("the upload is at offset {at}"),
            ),
        }
    }

    pub(super) fn response(&self) -> Response<Body> {
        let (status, code, message) = self.parts();
        body::json(
            status,
            &json!({"statusCode": status.as_u16().to_string(), "error": code, "message": message}),
        )
    }
}

pub(super) type ApiResult = Result<Response<Body>, ApiError>;

pub(super) fn incoming_stream(body: Incoming) -> ByteStream {
    Box::pin(http_body_util::BodyDataStream::new(body).map_err(|e| Box::new(e) as BoxError))
}
