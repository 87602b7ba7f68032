//! The storage API's routes: method and percent-decoded path (after `/storage/v1`) → [`Route`],
//! the one place that knows Supabase storage's URL layout.

use http::Method;

/// One route of the API, parsed from method and path (percent-decoded, after `/storage/v1`).
#[derive(Debug, PartialEq)]
pub(super) enum Route {
    ListBuckets,
    CreateBucket,
    GetBucket(String),
    UpdateBucket(String),
    DeleteBucket(String),
    EmptyBucket(String),
    List(String),
    ListV2(String),
    Move,
    Copy,
    SignMany(String),
    Sign(String, String),
    GetSigned(String, String),
    SignUpload(String, String),
    PutSigned(String, String),
    Info(String, String),
    Public(String, String),
    Get(String, String),
    Upload(String, String, bool),
    Remove(String),
    RemoveOne(String, String),
    /// TUS resumable uploads; what follows `/upload/resumable`.
    Tus(String),
    /// An image rendered (`/render/image/{authenticated|public|sign}/bucket/key`).
    Render(Reader, String, String),
}

/// Who reads an object through a render route: the caller (under RLS), anyone (a public
/// bucket), or the holder of a signed URL.
#[derive(Debug, PartialEq, Clone, Copy)]
pub(super) enum Reader {
    Caller,
    Public,
    Signed,
}

/// Splits `bucket/rest/of/key` into bucket and key.
fn bucket_key(s: &str) -> Option<(String, String)> {
    let (b, k) = s.split_once('/')?;
    (!b.is_empty() && !k.is_empty()).then(|| (b.to_string(), k.to_string()))
}

pub(super) fn route(method: &Method, path: &str) -> Option<Route> {
    let p = path.trim_start_matches('/');
    if let Some(rest) = p.strip_prefix("upload/resumable") {
        return (rest.is_empty() || rest.starts_with('/')).then(|| Route::Tus(rest.into()));
    }
    let (m, p) = (method.as_str(), p);
    if let Some(rest) = p.strip_prefix("render/image/") {
        let (reader, rest) = [
            ("authenticated/", Reader::Caller),
            ("public/", Reader::Public),
            ("sign/", Reader::Signed),
        ]
        .into_iter()
        .find_map(|(prefix, reader)| Some((reader, rest.strip_prefix(prefix)?)))?;
        let (b, k) = bucket_key(rest)?;
        return (m == "GET").then_some(Route::Render(reader, b, k));
    }
    if let Some(rest) = p.strip_prefix("bucket") {
        let rest = rest.trim_start_matches('/').trim_end_matches('/');
        return match (m, rest) {
            ("GET", "") => Some(Route::ListBuckets),
            ("POST", "") => Some(Route::CreateBucket),
            ("POST", r) if r.ends_with("/empty") => {
                Some(Route::EmptyBucket(r.trim_end_matches("/empty").to_string()))
            }
            (_, r) if r.contains('/') => None,
            ("GET", r) => Some(Route::GetBucket(r.into())),
            ("PUT", r) => Some(Route::UpdateBucket(r.into())),
            ("DELETE", r) => Some(Route::DeleteBucket(r.into())),
            _ => None,
        };
    }
    let rest = p.strip_prefix("object/")?;
    let bk = |s: &str| bucket_key(s);
    let r = match (m, rest) {
        ("POST", "move") => Route::Move,
        ("POST", "copy") => Route::Copy,
        ("POST", r) if r.starts_with("list/") => Route::List(r["list/".len()..].into()),
        ("POST", r) if r.starts_with("list-v2/") => Route::ListV2(r["list-v2/".len()..].into()),
        ("POST", r) if r.starts_with("upload/sign/") => {
            let (b, k) = bk(&r["upload/sign/".len()..])?;
            Route::SignUpload(b, k)
        }
        ("PUT", r) if r.starts_with("upload/sign/") => {
            let (b, k) = bk(&r["upload/sign/".len()..])?;
            Route::PutSigned(b, k)
        }
        ("POST", r) if r.starts_with("sign/") => {
            let r = &r["sign/".len()..];
            match bk(r) {
                Some((b, k)) => Route::Sign(b, k),
                None => Route::SignMany(r.trim_end_matches('/').into()),
            }
        }
        ("GET" | "HEAD", r) if r.starts_with("sign/") => {
            let (b, k) = bk(&r["sign/".len()..])?;
            Route::GetSigned(b, k)
        }
        ("GET", r) if r.starts_with("info/") => {
            let r = &r["info/".len()..];
            let r = r
                .strip_prefix("authenticated/")
                .or_else(|| r.strip_prefix("public/"))
                .unwrap_or(r);
            let (b, k) = bk(r)?;
            Route::Info(b, k)
        }
        ("GET" | "HEAD", r) if r.starts_with("public/") => {
            let (b, k) = bk(&r["public/".len()..])?;
            Route::Public(b, k)
        }
        ("GET" | "HEAD", r) => {
            let r = r.strip_prefix("authenticated/").unwrap_or(r);
            let (b, k) = bk(r)?;
            Route::Get(b, k)
        }
        ("POST", r) => {
            let (b, k) = bk(r)?;
            Route::Upload(b, k, false)
        }
        ("PUT", r) => {
            let (b, k) = bk(r)?;
            Route::Upload(b, k, true)
        }
        ("DELETE", r) => match bk(r) {
            Some((b, k)) => Route::RemoveOne(b, k),
            None => Route::Remove(r.trim_end_matches('/').into()),
        },
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |m: &str, p: &str| route(&m.parse().unwrap(), p);
        assert_eq!(r("GET", "/bucket"), Some(Route::ListBuckets));
        assert_eq!(r("GET", "/bucket/a"), Some(Route::GetBucket("a".into())));
        assert_eq!(
            r("POST", "/bucket/a/empty"),
            Some(Route::EmptyBucket("a".into()))
        );
        assert_eq!(
            r("POST", "/object/b/dir/ü f.txt"),
            Some(Route::Upload("b".into(), "dir/ü f.txt".into(), false))
        );
        assert_eq!(
            r("PUT", "/object/b/k"),
            Some(Route::Upload("b".into(), "k".into(), true))
        );
        assert_eq!(
            r("GET", "/object/public/b/k"),
            Some(Route::Public("b".into(), "k".into()))
        );
        assert_eq!(
            r("GET", "/object/authenticated/b/k"),
            Some(Route::Get("b".into(), "k".into()))
        );
        assert_eq!(
            r("GET", "/object/info/public/b/k"),
            Some(Route::Info("b".into(), "k".into()))
        );
        assert_eq!(
            r("POST", "/object/sign/b"),
            Some(Route::SignMany("b".into()))
        );
        assert_eq!(
            r("POST", "/object/sign/b/k"),
            Some(Route::Sign("b".into(), "k".into()))
        );
        assert_eq!(r("DELETE", "/object/b"), Some(Route::Remove("b".into())));
        assert_eq!(r("POST", "/object/list/b"), Some(Route::List("b".into())));
        assert_eq!(
            r("GET", "/render/image/authenticated/b/d/k.png"),
            Some(Route::Render(Reader::Caller, "b".into(), "d/k.png".into()))
        );
        assert_eq!(
            r("GET", "/render/image/public/b/k"),
            Some(Route::Render(Reader::Public, "b".into(), "k".into()))
        );
        assert_eq!(
            r("GET", "/render/image/sign/b/k"),
            Some(Route::Render(Reader::Signed, "b".into(), "k".into()))
        );
        assert_eq!(r("POST", "/render/image/public/b/k"), None);
        assert_eq!(r("GET", "/render/image/b/k"), None);
        assert_eq!(r("GET", "/render/image/public/b"), None);
        assert_eq!(r("GET", "/object/b"), None);
        assert_eq!(r("GET", "/nothing"), None);
        assert_eq!(r("PATCH", "/bucket/a"), None);
    }
}
