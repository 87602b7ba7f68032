//! Integrity of uploads: the `Content-MD5` and `x-amz-checksum-*` values a client declares (as
//! headers, or as an aws-chunked body's trailer) are checked against the bytes as they stream. A
//! mismatch fails the body before it ends, so the storage core keeps nothing of it, and the
//! operation answers BadDigest. Verified checksums are kept with the object and returned when a
//! client asks (`x-amz-checksum-mode: ENABLED`).

use std::sync::{Arc, Mutex};

use s3s::{
    checksum::ChecksumHasher,
    crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256},
    dto::Checksum,
};
use serde_json::{Value, json};

use super::*;

/// What a client declared about an upload's bytes.
#[derive(Default)]
pub(super) struct Declared {
    /// `Content-MD5`: base64 of the body's MD5.
    pub md5: Option<String>,
    /// `x-amz-checksum-*` headers.
    pub sums: Checksum,
    /// `x-amz-checksum-algorithm` / `x-amz-sdk-checksum-algorithm` with no value in the headers:
    /// the value comes in the body's trailer.
    pub algorithm: Option<String>,
    pub trailer: Option<s3s::TrailingHeaders>,
}

/// The names S3 gives each checksum, as header suffix, metadata key and `Checksum` field.
const ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

fn field<'a>(c: &'a Checksum, algo: &str) -> Option<&'a String> {
    match algo {
        "CRC32" => c.checksum_crc32.as_ref(),
        "CRC32C" => c.checksum_crc32c.as_ref(),
        "CRC64NVME" => c.checksum_crc64nvme.as_ref(),
        "SHA1" => c.checksum_sha1.as_ref(),
        "SHA256" => c.checksum_sha256.as_ref(),
        _ => None,
    }
}

fn set(c: &mut Checksum, algo: &str, v: String) {
    match algo {
        "CRC32" => c.checksum_crc32 = Some(v),
        "CRC32C" => c.checksum_crc32c = Some(v),
        "CRC64NVME" => c.checksum_crc64nvme = Some(v),
        "SHA1" => c.checksum_sha1 = Some(v),
        "SHA256" => c.checksum_sha256 = Some(v),
        _ => {}
    }
}

impl Declared {
    /// Refuses an algorithm S3 does not know (InvalidRequest), before any byte is read.
    pub(super) fn new(
        md5: Option<String>,
        sums: Checksum,
        algorithm: Option<&str>,
        trailer: Option<s3s::TrailingHeaders>,
    ) -> S3Result<Declared> {
        let algorithm = match algorithm.map(str::to_ascii_uppercase) {
            Some(a) if !ALGORITHMS.contains(&a.as_str()) => {
                return Err(s3_error!(InvalidRequest, "Unknown checksum algorithm {a}"));
            }
            a => a,
        };
        if let Some(m) = &md5 {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD.decode(m.trim());
            if decoded.map_or(true, |d| d.len() != 16) {
                return Err(s3_error!(
                    InvalidDigest,
                    "The Content-MD5 you specified was invalid"
                ));
            }
        }
        Ok(Declared {
            md5,
            sums,
            algorithm,
            trailer,
        })
    }

    fn is_empty(&self) -> bool {
        self.md5.is_none()
            && self.algorithm.is_none()
            && ALGORITHMS.iter().all(|a| field(&self.sums, a).is_none())
    }
}

/// The outcome of a checked body, read after the storage core is done with it: the checksums
/// verified (to keep and return), or the refusal that failed the body.
#[derive(Clone, Default)]
pub(super) struct Verdict(Arc<Mutex<Outcome>>);

#[derive(Default)]
struct Outcome {
    refused: Option<String>,
    verified: Checksum,
}

impl Verdict {
    /// The operation's error: BadDigest when the check failed the body, else `e` as S3 words it.
    pub(super) fn error(&self, e: StorageError) -> S3Error {
        match self.0.lock().ok().and_then(|o| o.refused.clone()) {
            Some(why) => S3Error::with_message(S3ErrorCode::BadDigest, why),
            None => s3_err(e),
        }
    }

    /// The checksums the body was verified against.
    pub(super) fn verified(&self) -> Checksum {
        self.0
            .lock()
            .map(|o| o.verified.clone())
            .unwrap_or_default()
    }
}

/// The checksums to keep with an object, as its metadata's `checksum<ALGO>` keys.
pub(super) fn to_metadata(c: &Checksum, into: &mut serde_json::Map<String, Value>) {
    for a in ALGORITHMS {
        if let Some(v) = field(c, a) {
            into.insert(format!("checksum{a}"), json!(v));
        }
    }
}

/// The checksums kept with an object.
pub(super) fn from_metadata(meta: &Value) -> Checksum {
    let mut c = Checksum::default();
    for a in ALGORITHMS {
        if let Some(v) = meta.get(format!("checksum{a}")).and_then(Value::as_str) {
            set(&mut c, a, v.to_string());
        }
    }
    c
}

/// The headers' declared checksums, for the storage core to keep (trailer values are not known
/// before the bytes have streamed, and are only verified).
pub(super) fn declared_metadata(d: &Declared) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    to_metadata(&d.sums, &mut m);
    m
}

/// `body`, checked against what the client declared; the verdict is known once it has ended.
pub(super) fn checked(body: ByteStream, declared: Declared) -> (ByteStream, Verdict) {
    let verdict = Verdict::default();
    if declared.is_empty() {
        return (body, verdict);
    }
    let mut hasher = ChecksumHasher::default();
    let wants =
        |a: &str| field(&declared.sums, a).is_some() || declared.algorithm.as_deref() == Some(a);
    if wants("CRC32") {
        hasher.crc32 = Some(Crc32::new());
    }
    if wants("CRC32C") {
        hasher.crc32c = Some(Crc32c::new());
    }
    if wants("CRC64NVME") {
        hasher.crc64nvme = Some(Crc64Nvme::new());
    }
    if wants("SHA1") {
        hasher.sha1 = Some(Sha1::new());
    }
    if wants("SHA256") {
        hasher.sha256 = Some(Sha256::new());
    }
    let md5 = declared.md5.is_some().then(Md5::new);
    let state = Some((hasher, md5, declared, body));
    let out = verdict.clone();
    let stream = futures_util::stream::unfold(state, move |state| {
        let verdict = out.clone();
        async move {
            let (mut hasher, mut md5, declared, mut body) = state?;
            match futures_util::StreamExt::next(&mut body).await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    if let Some(m) = &mut md5 {
                        m.update(&chunk);
                    }
                    Some((Ok(chunk), Some((hasher, md5, declared, body))))
                }
                Some(Err(e)) => Some((Err(e), None)),
                None => match judge(hasher, md5, &declared) {
                    Ok(verified) => {
                        if let Ok(mut o) = verdict.0.lock() {
                            o.verified = verified;
                        }
                        None
                    }
                    Err(why) => {
                        if let Ok(mut o) = verdict.0.lock() {
                            o.refused = Some(why.clone());
                        }
                        Some((Err(why.into()), None))
                    }
                },
            }
        }
    });
    (Box::pin(stream), verdict)
}

/// Compares the computed sums with the declared ones (headers, then the trailer).
fn judge(
    hasher: ChecksumHasher,
    md5: Option<Md5>,
    declared: &Declared,
) -> Result<Checksum, String> {
    use base64::Engine as _;
    if let (Some(m), Some(want)) = (md5, &declared.md5) {
        let got = base64::engine::general_purpose::STANDARD.encode(m.finalize());
        if got != want.trim() {
            return Err("The Content-MD5 you specified did not match what we received".into());
        }
    }
    let computed = hasher.finalize();
    let mut expected = declared.sums.clone();
    if let Some(t) = &declared.trailer {
        t.read(|h| {
            for a in ALGORITHMS {
                let name = format!("x-amz-checksum-{}", a.to_ascii_lowercase());
                if let Some(v) = h.get(&name).and_then(|v| v.to_str().ok()) {
                    set(&mut expected, a, v.to_string());
                }
            }
        });
    }
    let mut verified = Checksum::default();
    for a in ALGORITHMS {
        if let (Some(want), Some(got)) = (field(&expected, a), field(&computed, a)) {
            if want.trim() != got {
                return Err(format!(
                    "The {a} checksum you specified did not match what we received"
                ));
            }
            set(&mut verified, a, got.clone());
        }
    }
    Ok(verified)
}
