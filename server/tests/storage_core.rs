//! The storage core against a real PostgreSQL: Supabase's schema and helpers, writes and overwrites
//! (bytes visible only with their row, old version removed after commit), row-level security deciding
//! uploads and downloads before a byte is stored, listing with delimiters, multipart uploads, orphan
//! cleanup by age.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestDb;
use doska::{
    jwt::Caller,
    storage::{
        self,
        backend::BlobKey,
        core::{Actor, BucketSpec, ByteRange, PutSpec, Storage, StorageError, collect},
        disk,
    },
};
use serde_json::json;

const ALICE: &str = "7f1d2a3e-0000-4000-8000-00000000000a";
const BOB: &str = "7f1d2a3e-0000-4000-8000-00000000000b";

fn user(sub: &str) -> Actor {
    common::storage_user(sub, "POST")
}

fn service() -> Actor {
    Actor::service("PUT", "/")
}

fn spec(bucket: &str, key: &str, upsert: bool) -> PutSpec {
    PutSpec {
        bucket: bucket.into(),
        key: key.into(),
        upsert,
        content_type: "text/plain".into(),
        cache_control: None,
        user_metadata: None,
        declared_len: None,
        extra: None,
    }
}

async fn read(
    core: &Storage,
    actor: &Actor,
    bucket: &str,
    key: &str,
) -> Result<Bytes, StorageError> {
    let (_, s, _) = core.get(actor, bucket, key, None).await?;
    collect(s, 1 << 30).await
}

/// Every blob file currently in the storage dir.
async fn blobs(core: &Storage) -> Vec<BlobKey> {
    core.backend().older_than(Duration::ZERO).await.unwrap()
}

#[tokio::test]
async fn schema_helpers_and_rls_are_supabases() {
    let t = TestDb::new().await;
    let row = t
        .admin()
        .query_one(
            "select storage.foldername('a/b/c.txt'), storage.filename('a/b/c.txt'),
                    storage.extension('a/b/c.tar.gz'),
                    (select bool_and(relrowsecurity) from pg_class
                      where oid in ('storage.objects'::regclass, 'storage.buckets'::regclass)),
                    (select collation_name from information_schema.columns
                      where table_schema = 'storage' and table_name = 'objects' and column_name = 'name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<String>>(0), vec!["a", "b"]);
    assert_eq!(row.get::<_, String>(1), "c.txt");
    assert_eq!(row.get::<_, String>(2), "gz");
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, String>(4), "C");
    for table in ["storage.buckets", "storage.objects"] {
        for role in ["anon", "authenticated", "service_role"] {
            let ok: bool = t
                .admin()
                .query_one(
                    "select has_table_privilege($1, $2, 'select,insert,update,delete')",
                    &[&role, &table],
                )
                .await
                .unwrap()
                .get(0);
            assert!(ok, "{role} on {table}");
        }
    }
}

#[tokio::test]
async fn put_get_overwrite_delete_keep_bytes_and_rows_together() {
    let t = TestDb::new().await;
    let core = storage::core_of(&t.state);
    let svc = service();
    core.create_bucket(&svc, "files", "files", &BucketSpec::default())
        .await
        .unwrap();
    let key = "dir with space/ünïcödé ✓/../../etc/passwd";
    let v1 = core
        .put(
            &svc,
            &spec("files", key, false),
            disk::once(Bytes::from_static(b"first")),
        )
        .await
        .unwrap();
    assert_eq!(v1.size, 5);
    assert_eq!(v1.etag, format!("\"{}\"", hex::encode(md5_of(b"first"))));
    assert_eq!(read(&core, &svc, "files", key).await.unwrap(), "first");
    // Without upsert a second write is refused and the first bytes stay.
    let e = core
        .put(
            &svc,
            &spec("files", key, false),
            disk::once(Bytes::from_static(b"second")),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::KeyExists), "{e:?}");
    assert_eq!(blobs(&core).await, vec![v1.blob()]);
    // Overwrite: same id, new version; the old version's bytes are gone afterwards.
    let v2 = core
        .put(
            &svc,
            &spec("files", key, true),
            disk::once(Bytes::from_static(b"second")),
        )
        .await
        .unwrap();
    assert_eq!(v2.id, v1.id);
    assert_ne!(v2.version, v1.version);
    assert_eq!(read(&core, &svc, "files", key).await.unwrap(), "second");
    assert_eq!(blobs(&core).await, vec![v2.blob()]);
    // Ranges.
    let (_, s, span) = core
        .get(&svc, "files", key, ByteRange::parse("bytes=1-3"))
        .await
        .unwrap();
    assert_eq!(span, Some((1, 3)));
    assert_eq!(collect(s, 100).await.unwrap(), "eco");
    let (_, s, _) = core
        .get(&svc, "files", key, ByteRange::parse("bytes=-2"))
        .await
        .unwrap();
    assert_eq!(collect(s, 100).await.unwrap(), "nd");
    assert!(matches!(
        core.get(&svc, "files", key, ByteRange::parse("bytes=6-"))
            .await,
        Err(StorageError::InvalidRange)
    ));
    // Nothing landed outside the storage dir's data folder.
    assert!(
        !t.state.config.storage_dir.join("etc").exists()
            && !t.state.config.data_dir.join("etc").exists()
    );
    // Copy and rename.
    let c = core
        .copy(&svc, "files", key, &spec("files", "copy.txt", false))
        .await
        .unwrap();
    assert_ne!(c.id, v2.id);
    core.rename(&svc, "files", "copy.txt", "files", "moved.txt")
        .await
        .unwrap();
    assert_eq!(
        read(&core, &svc, "files", "moved.txt").await.unwrap(),
        "second"
    );
    assert!(matches!(
        core.head(&svc, "files", "copy.txt").await,
        Err(StorageError::NoSuchKey)
    ));
    // A bucket with objects cannot be deleted; emptied, it can.
    assert!(matches!(
        core.delete_bucket(&svc, "files").await,
        Err(StorageError::BucketNotEmpty)
    ));
    let gone = core
        .delete(&svc, "files", &[key.to_string(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(core.empty_bucket(&svc, "files").await.unwrap(), 1);
    assert!(blobs(&core).await.is_empty());
    core.delete_bucket(&svc, "files").await.unwrap();
    assert!(matches!(
        core.put(&svc, &spec("files", "x", false), disk::once(Bytes::new()))
            .await,
        Err(StorageError::NoSuchBucket)
    ));
}

fn md5_of(b: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(b).into()
}

#[tokio::test]
async fn policies_decide_before_bytes_are_stored() {
    let t = TestDb::new().await;
    t.admin()
        .batch_execute(&format!(
            "insert into storage.buckets (id, name) values ('private', 'private');
             {OWN_FOLDER_POLICIES}"
        ))
        .await
        .unwrap();
    let core = storage::core_of(&t.state);
    let alice = user(ALICE);
    let bob = user(BOB);
    let mine = format!("{ALICE}/notes.txt");
    core.put(
        &alice,
        &spec("private", &mine, false),
        disk::once(Bytes::from_static(b"alice")),
    )
    .await
    .unwrap();
    // Bob can neither read nor write into Alice's folder; his refused body is never stored.
    assert!(matches!(
        read(&core, &bob, "private", &mine).await,
        Err(StorageError::NoSuchKey)
    ));
    let before = blobs(&core).await;
    let body = futures_util::stream::once(async {
        panic!("a denied upload must not read its body")
            as Result<Bytes, doska::http::body::BoxError>
    });
    let e = core
        .put(&bob, &spec("private", &mine, true), Box::pin(body))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Denied), "{e:?}");
    assert_eq!(blobs(&core).await, before);
    assert_eq!(
        read(&core, &alice, "private", &mine).await.unwrap(),
        "alice"
    );
    // Anonymous callers see nothing, write nothing.
    let anon = Actor {
        caller: Caller {
            role: "anon".into(),
            claims: json!({}).into(),
            token: None,
        },
        ..user(ALICE)
    };
    assert!(matches!(
        core.put(
            &anon,
            &spec("private", "x", false),
            disk::once(Bytes::new())
        )
        .await,
        Err(StorageError::Denied)
    ));
    let page = core
        .list(&bob, "private", "", None, None, 100)
        .await
        .unwrap();
    assert!(page.objects.is_empty());
    let page = core
        .list(&alice, "private", "", None, None, 100)
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 1);
    // Deleting without a delete policy removes nothing.
    assert!(
        core.delete(&alice, "private", std::slice::from_ref(&mine))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        read(&core, &alice, "private", &mine).await.unwrap(),
        "alice"
    );
}

/// `spec` for a body of `len` declared bytes: at most `SMALL_PUT`, it takes the one-transaction path.
fn declared(mut s: PutSpec, len: usize) -> PutSpec {
    s.declared_len = Some(len as u64);
    s
}

/// Bucket `private`: each user reads, writes and overwrites under a folder named by their id.
const OWN_FOLDER_POLICIES: &str = "
    create policy own_read on storage.objects for select to authenticated
      using (bucket_id = 'private' and (storage.foldername(name))[1] = auth.uid()::text);
    create policy own_write on storage.objects for insert to authenticated
      with check (bucket_id = 'private' and (storage.foldername(name))[1] = auth.uid()::text);
    create policy own_update on storage.objects for update to authenticated
      using (bucket_id = 'private' and (storage.foldername(name))[1] = auth.uid()::text);";

#[tokio::test]
async fn small_bodies_keep_every_guarantee_in_one_transaction() {
    let t = TestDb::new().await;
    t.admin()
        .batch_execute(&format!(
            "insert into storage.buckets (id, name, file_size_limit, allowed_mime_types)
               values ('private', 'private', 100000, array['text/*']);
             {OWN_FOLDER_POLICIES}"
        ))
        .await
        .unwrap();
    let core = storage::core_of(&t.state);
    let (alice, bob) = (user(ALICE), user(BOB));
    let mine = format!("{ALICE}/notes.txt");
    let small = |key: &str, upsert: bool, body: &'static [u8]| {
        (
            declared(spec("private", key, upsert), body.len()),
            disk::once(Bytes::from_static(body)),
        )
    };
    let (s, b) = small(&mine, false, b"first");
    let v1 = core.put(&alice, &s, b).await.unwrap();
    assert_eq!(v1.etag, format!("\"{}\"", hex::encode(md5_of(b"first"))));
    assert_eq!((v1.size, v1.owner_id.as_deref()), (5, Some(ALICE)));
    assert_eq!(blobs(&core).await, vec![v1.blob()]);
    // Refused by the policies, by the key being taken, by the bucket's limits or for a bucket that
    // does not exist: no file is made, and what was there stays.
    for (actor, s, b, refused) in [
        (
            &bob,
            small(&mine, true, b"bob").0,
            small(&mine, true, b"bob").1,
            "denied",
        ),
        (
            &alice,
            small(&mine, false, b"again").0,
            small(&mine, false, b"again").1,
            "exists",
        ),
        (
            &alice,
            PutSpec {
                content_type: "image/png".into(),
                ..small(&mine, true, b"png").0
            },
            small(&mine, true, b"png").1,
            "mime",
        ),
        (
            &alice,
            PutSpec {
                bucket: "nope".into(),
                ..small(&mine, true, b"x").0
            },
            small(&mine, true, b"x").1,
            "bucket",
        ),
    ] {
        let e = core.put(actor, &s, b).await.unwrap_err();
        let expected = match refused {
            "denied" => matches!(e, StorageError::Denied),
            "exists" => matches!(e, StorageError::KeyExists),
            "mime" => matches!(e, StorageError::MimeNotAllowed(_)),
            _ => matches!(e, StorageError::NoSuchBucket),
        };
        assert!(expected, "{refused}: {e:?}");
        assert_eq!(blobs(&core).await, vec![v1.blob()], "{refused}");
        assert_eq!(
            read(&core, &alice, "private", &mine).await.unwrap(),
            "first"
        );
    }
    // Too large for the bucket, declared honestly.
    let big: &'static [u8] = Box::leak(vec![b'x'; 100_001].into_boxed_slice());
    let (s, b) = small(&format!("{ALICE}/big.txt"), false, big);
    assert!(matches!(
        core.put(&alice, &s, b).await,
        Err(StorageError::TooLarge { limit: 100000 })
    ));
    assert_eq!(blobs(&core).await, vec![v1.blob()]);
    // An overwrite keeps the row's id (the file is named after it), removes the old version.
    let (s, b) = small(&mine, true, b"second");
    let v2 = core.put(&alice, &s, b).await.unwrap();
    assert_eq!(v2.id, v1.id);
    assert_ne!(v2.version, v1.version);
    assert_eq!(
        read(&core, &alice, "private", &mine).await.unwrap(),
        "second"
    );
    assert_eq!(blobs(&core).await, vec![v2.blob()]);
    // A body declared small that turns out longer is streamed whole the usual way.
    let long = vec![b'y'; storage::core::SMALL_PUT as usize + 30_000];
    let chunks: Vec<Result<Bytes, doska::http::body::BoxError>> = long
        .chunks(10_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let s = declared(spec("private", &format!("{ALICE}/long.txt"), false), 10);
    let v3 = core
        .put(&alice, &s, Box::pin(futures_util::stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(v3.size, long.len() as u64);
    assert_eq!(
        read(&core, &alice, "private", &format!("{ALICE}/long.txt"))
            .await
            .unwrap(),
        long
    );
}

#[tokio::test]
async fn bucket_limits_refuse_before_and_while_streaming() {
    let t = TestDb::new().await;
    let core = storage::core_of(&t.state);
    let svc = service();
    core.create_bucket(
        &svc,
        "small",
        "small",
        &BucketSpec {
            public: Some(true),
            file_size_limit: Some(Some(4)),
            allowed_mime_types: Some(Some(vec!["text/*".into()])),
        },
    )
    .await
    .unwrap();
    let mut s = spec("small", "a", false);
    s.declared_len = Some(5);
    assert!(matches!(
        core.put(&svc, &s, disk::once(Bytes::from_static(b"12345")))
            .await,
        Err(StorageError::TooLarge { limit: 4 })
    ));
    s.declared_len = None;
    assert!(matches!(
        core.put(&svc, &s, disk::once(Bytes::from_static(b"12345")))
            .await,
        Err(StorageError::TooLarge { .. })
    ));
    s.content_type = "image/png".into();
    assert!(matches!(
        core.put(&svc, &s, disk::once(Bytes::from_static(b"1")))
            .await,
        Err(StorageError::MimeNotAllowed(_))
    ));
    assert!(blobs(&core).await.is_empty());
}

#[tokio::test]
async fn listing_groups_by_delimiter_and_pages() {
    let t = TestDb::new().await;
    let core = storage::core_of(&t.state);
    let svc = service();
    core.create_bucket(&svc, "l", "l", &BucketSpec::default())
        .await
        .unwrap();
    for k in ["a/1", "a/2", "b", "c/x/y", "d"] {
        core.put(
            &svc,
            &spec("l", k, false),
            disk::once(Bytes::from_static(b".")),
        )
        .await
        .unwrap();
    }
    let p = core.list(&svc, "l", "", Some("/"), None, 10).await.unwrap();
    assert_eq!(p.prefixes, vec!["a/", "c/"]);
    let names: Vec<_> = p.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, vec!["b", "d"]);
    assert!(!p.truncated);
    // Pages of two entries, continuing after the last key or prefix.
    let p1 = core.list(&svc, "l", "", Some("/"), None, 2).await.unwrap();
    assert!(p1.truncated);
    assert_eq!(p1.prefixes, vec!["a/"]);
    assert_eq!(p1.objects[0].name, "b");
    let p2 = core
        .list(&svc, "l", "", Some("/"), p1.last.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(p2.prefixes, vec!["c/"]);
    assert_eq!(p2.objects[0].name, "d");
    assert!(!p2.truncated);
    let p = core.list(&svc, "l", "a/", None, None, 10).await.unwrap();
    assert_eq!(p.objects.len(), 2);
}

/// Uploads `parts` (number, bytes) to a new upload of `bucket/key`; returns the upload id and the
/// (number, ETag) list to complete it with.
async fn upload_parts(
    core: &Storage,
    actor: &Actor,
    (bucket, key): (&str, &str),
    parts: &[(i32, &[u8])],
) -> (String, Vec<(i32, String)>) {
    let up = core
        .create_upload(actor, &spec(bucket, key, true), None)
        .await
        .unwrap();
    let mut listed = Vec::new();
    for (n, bytes) in parts {
        let (etag, size) = core
            .upload_part(
                actor,
                bucket,
                key,
                &up,
                *n,
                disk::once(Bytes::copy_from_slice(bytes)),
                None,
            )
            .await
            .unwrap();
        assert_eq!(size, bytes.len() as u64);
        listed.push((*n, etag));
    }
    (up, listed)
}

async fn read_range(core: &Storage, bucket: &str, key: &str, first: u64, last: u64) -> Bytes {
    let range = ByteRange::From {
        first,
        last: Some(last),
    };
    let (_, s, span) = core
        .get(&service(), bucket, key, Some(range))
        .await
        .unwrap();
    assert_eq!(span, Some((first, last - first + 1)));
    collect(s, 1 << 30).await.unwrap()
}

#[tokio::test]
async fn multipart_objects_stay_as_their_parts() {
    let t = TestDb::new().await;
    let core = storage::core_of(&t.state);
    let svc = service();
    core.create_bucket(&svc, "m", "m", &BucketSpec::default())
        .await
        .unwrap();
    let s = spec("m", "big", true);
    let up = core.create_upload(&svc, &s, None).await.unwrap();
    let e1 = core
        .upload_part(
            &svc,
            "m",
            "big",
            &up,
            1,
            disk::once(Bytes::from_static(b"zzz")),
            None,
        )
        .await
        .unwrap();
    // Uploading part 1 again replaces it (and its bytes).
    let e1 = {
        let again = core
            .upload_part(
                &svc,
                "m",
                "big",
                &up,
                1,
                disk::once(Bytes::from_static(b"hello ")),
                None,
            )
            .await
            .unwrap();
        assert_ne!(again, e1);
        again
    };
    let e2 = core
        .upload_part(
            &svc,
            "m",
            "big",
            &up,
            2,
            disk::once(Bytes::from_static(b"world")),
            None,
        )
        .await
        .unwrap();
    // A part uploaded but not listed at completion: its bytes go when the upload completes.
    core.upload_part(
        &svc,
        "m",
        "big",
        &up,
        3,
        disk::once(Bytes::from_static(b"unused")),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        core.list_parts(&svc, "m", "big", &up).await.unwrap().len(),
        3
    );
    assert_eq!(core.list_uploads(&svc, "m", "").await.unwrap().len(), 1);
    assert!(matches!(
        core.complete_upload(&svc, "m", "big", &up, &[(1, "\"bad\"".into())])
            .await,
        Err(StorageError::InvalidPart(_))
    ));
    let info = core
        .complete_upload(
            &svc,
            "m",
            "big",
            &up,
            &[(1, e1.0.clone()), (2, e2.0.clone())],
        )
        .await
        .unwrap();
    assert!(info.etag.ends_with("-2\""), "{}", info.etag);
    assert_eq!(info.size, 11);
    assert_eq!(read(&core, &svc, "m", "big").await.unwrap(), "hello world");
    // No joined copy: the object's bytes are its two listed parts, and nothing else is stored.
    let mut parts = info.blobs();
    assert_eq!(parts.len(), 2);
    let mut stored = blobs(&core).await;
    parts.sort_by_key(|b| format!("{b:?}"));
    stored.sort_by_key(|b| format!("{b:?}"));
    assert_eq!(stored, parts);
    let head = core.head(&svc, "m", "big").await.unwrap();
    assert_eq!(head.blobs(), info.blobs());
    assert_eq!(head.etag, info.etag);
    assert!(core.list_uploads(&svc, "m", "").await.unwrap().is_empty());
    // The upload is gone with the commit: it can neither be aborted nor completed again.
    assert!(matches!(
        core.abort_upload(&svc, "m", "big", &up).await,
        Err(StorageError::NoSuchUpload)
    ));
    assert_eq!(read(&core, &svc, "m", "big").await.unwrap(), "hello world");
    // Ranges within one part, across the boundary, the tail.
    assert_eq!(read_range(&core, "m", "big", 1, 3).await, "ell");
    assert_eq!(read_range(&core, "m", "big", 4, 7).await, "o wo");
    assert_eq!(read_range(&core, "m", "big", 6, 10).await, "world");
    let (_, tail, _) = core
        .get(&svc, "m", "big", Some(ByteRange::Suffix { len: 7 }))
        .await
        .unwrap();
    assert_eq!(collect(tail, 100).await.unwrap(), "o world");

    // Bigger parts (several read chunks each) read whole and across boundaries.
    let a: Vec<u8> = (0..(700u32 << 10)).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..(300u32 << 10)).map(|i| (i % 13) as u8).collect();
    let c = b"the end".to_vec();
    let (up2, listed) =
        upload_parts(&core, &svc, ("m", "large"), &[(1, &a), (2, &b), (5, &c)]).await;
    let large = core
        .complete_upload(&svc, "m", "large", &up2, &listed)
        .await
        .unwrap();
    let whole = [&a[..], &b, &c].concat();
    assert_eq!(large.size, whole.len() as u64);
    assert_eq!(read(&core, &svc, "m", "large").await.unwrap(), whole);
    let cut = a.len() as u64 + b.len() as u64;
    assert_eq!(
        read_range(&core, "m", "large", 1000, cut + 2).await,
        &whole[1000..cut as usize + 3]
    );
    // A copy reads through the parts into one new blob.
    let copied = core
        .copy(&svc, "m", "large", &spec("m", "copy", false))
        .await
        .unwrap();
    assert_eq!(copied.blobs(), vec![copied.blob()]);
    assert_eq!(read(&core, &svc, "m", "copy").await.unwrap(), whole);
    // A renamed multipart object keeps its parts.
    core.rename(&svc, "m", "large", "m", "moved").await.unwrap();
    assert_eq!(read(&core, &svc, "m", "moved").await.unwrap(), whole);

    // Overwriting a multipart object removes its parts; so does deleting one.
    let over = core
        .put(&svc, &s, disk::once(Bytes::from_static(b"plain")))
        .await
        .unwrap();
    assert_eq!(read(&core, &svc, "m", "big").await.unwrap(), "plain");
    core.delete(&svc, "m", &["moved".into()]).await.unwrap();
    let mut stored = blobs(&core).await;
    let mut want = vec![over.blob(), copied.blob()];
    stored.sort_by_key(|b| format!("{b:?}"));
    want.sort_by_key(|b| format!("{b:?}"));
    assert_eq!(stored, want);
    // A multipart object overwritten by another one: the old parts go, the new ones stay.
    let (up3, listed) = upload_parts(&core, &svc, ("m", "big"), &[(1, b"one "), (2, b"two")]).await;
    let m1 = core
        .complete_upload(&svc, "m", "big", &up3, &listed)
        .await
        .unwrap();
    let (up4, listed) = upload_parts(&core, &svc, ("m", "big"), &[(1, b"three")]).await;
    let m2 = core
        .complete_upload(&svc, "m", "big", &up4, &listed)
        .await
        .unwrap();
    assert_eq!(read(&core, &svc, "m", "big").await.unwrap(), "three");
    let stored = blobs(&core).await;
    assert!(m1.blobs().iter().all(|b| !stored.contains(b)));
    assert!(m2.blobs().iter().all(|b| stored.contains(b)));
    // The cleanup keeps every live blob, and forgets the layouts of versions that are gone.
    let n = storage::core::cleanup_orphans(core.backend().as_ref(), &t.state.admin, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let layouts: i64 = t
        .admin()
        .query_one("select count(*) from storage.doska_object_parts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(layouts, 1, "only the live object's layout remains");
    assert_eq!(read(&core, &svc, "m", "big").await.unwrap(), "three");

    // A multipart object deleted by a transaction whose doska died before removing the files (here:
    // the row deleted by hand): its parts are orphans, and the cleanup removes them.
    let (up5, listed) = upload_parts(&core, &svc, ("m", "lost"), &[(1, b"a"), (2, b"b")]).await;
    let lost = core
        .complete_upload(&svc, "m", "lost", &up5, &listed)
        .await
        .unwrap();
    t.admin()
        .execute("delete from storage.objects where name = 'lost'", &[])
        .await
        .unwrap();
    let n = storage::core::cleanup_orphans(core.backend().as_ref(), &t.state.admin, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let stored = blobs(&core).await;
    assert!(lost.blobs().iter().all(|b| !stored.contains(b)));

    // Aborting.
    let up = core.create_upload(&svc, &s, None).await.unwrap();
    core.upload_part(
        &svc,
        "m",
        "big",
        &up,
        1,
        disk::once(Bytes::from_static(b"x")),
        None,
    )
    .await
    .unwrap();
    core.abort_upload(&svc, "m", "big", &up).await.unwrap();
    assert!(matches!(
        core.abort_upload(&svc, "m", "big", &up).await,
        Err(StorageError::NoSuchUpload)
    ));
    let mut stored = blobs(&core).await;
    let mut want = [vec![copied.blob()], m2.blobs()].concat();
    stored.sort_by_key(|b| format!("{b:?}"));
    want.sort_by_key(|b| format!("{b:?}"));
    assert_eq!(stored, want);
}

/// The transaction that commits a multipart object also takes the upload: one that is gone (aborted
/// between the check and the commit) or someone else's refuses, and nothing commits.
#[tokio::test]
async fn completing_needs_the_upload_in_the_same_transaction() {
    let t = TestDb::new().await;
    let core = storage::core_of(&t.state);
    let svc = service();
    core.create_bucket(&svc, "u", "u", &BucketSpec::default())
        .await
        .unwrap();
    let (up, _) = upload_parts(&core, &svc, ("u", "k"), &[(1, b"abc")]).await;
    let part: uuid::Uuid = t
        .admin()
        .query_one(
            "select id from storage.s3_multipart_uploads_parts where upload_id = $1",
            &[&up],
        )
        .await
        .unwrap()
        .get(0);
    // The adopting statement as `role` with `sub`, in a transaction rolled back afterwards; its
    // SQLSTATE when refused.
    let pool = t.pool().clone();
    let adopt = |role: &'static str, sub: Option<&'static str>, upload: String| {
        let pool = pool.clone();
        async move {
            let mut c = pool.get().await.unwrap();
            let tx = c.transaction().await.unwrap();
            tx.execute(
                "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
                &[&role, &json!({"sub": sub, "role": role}).to_string()],
            )
            .await
            .unwrap();
            tx.query_one(
                "select storage.doska_adopt_upload($1, gen_random_uuid(), 'v', $2)",
                &[&upload, &vec![part]],
            )
            .await
            .err()
            .and_then(|e| e.code().map(|c| c.code().to_string()))
        }
    };
    // Another user than the upload's owner: refused.
    assert_eq!(
        adopt("authenticated", Some(BOB), up.clone())
            .await
            .as_deref(),
        Some("P0002")
    );
    // A part of another upload: refused.
    let (other, _) = upload_parts(&core, &svc, ("u", "k"), &[(1, b"def")]).await;
    assert_eq!(
        adopt("service_role", None, other).await.as_deref(),
        Some("P0002")
    );
    // The upload's owner, but no object row with that version in the transaction (the guarded row
    // statement wrote nothing): refused, the upload stays.
    assert_eq!(
        adopt("service_role", None, up.clone()).await.as_deref(),
        Some("P0002")
    );
    assert_eq!(core.list_parts(&svc, "u", "k", &up).await.unwrap().len(), 1);
    // Gone (aborted).
    core.abort_upload(&svc, "u", "k", &up).await.unwrap();
    assert_eq!(
        adopt("service_role", None, up.clone()).await.as_deref(),
        Some("P0002")
    );
    assert!(matches!(
        core.head(&svc, "u", "k").await,
        Err(StorageError::NoSuchKey)
    ));
}

#[tokio::test]
async fn orphans_go_only_once_old() {
    let t = TestDb::new().await;
    let core = storage::core_of(&t.state);
    let svc = service();
    core.create_bucket(&svc, "o", "o", &BucketSpec::default())
        .await
        .unwrap();
    let kept = core
        .put(
            &svc,
            &spec("o", "kept", false),
            disk::once(Bytes::from_static(b"k")),
        )
        .await
        .unwrap();
    // A blob no row refers to, as a crash between write and commit leaves it.
    let orphan = BlobKey::Object {
        id: uuid::Uuid::new_v4(),
        version: uuid::Uuid::new_v4(),
    };
    core.backend()
        .write(&orphan, disk::once(Bytes::from_static(b"o")), None)
        .await
        .unwrap();
    let n = storage::core::cleanup_orphans(
        core.backend().as_ref(),
        &t.state.admin,
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(
        n, 0,
        "young orphans may be uploads in flight in another process"
    );
    let n = storage::core::cleanup_orphans(core.backend().as_ref(), &t.state.admin, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(blobs(&core).await, vec![kept.blob()]);
}

/// A write's statements are prepared once per connection and reused: on one connection, callers of
/// different roles, taking turns well past the point where PostgreSQL switches to a generic plan,
/// each still get their own policies' answer, and a policy dropped meanwhile takes effect at once.
#[tokio::test]
async fn reused_prepared_statements_still_follow_each_callers_role_and_policies() {
    let t = TestDb::with_settings(doska::config::Settings {
        db_pool: Some(1),
        ..Default::default()
    })
    .await;
    t.admin()
        .batch_execute(&format!(
            "insert into storage.buckets (id, name) values ('private', 'private');
             {OWN_FOLDER_POLICIES}"
        ))
        .await
        .unwrap();
    let core = storage::core_of(&t.state);
    let (alice, bob) = (user(ALICE), user(BOB));
    let anon = Actor {
        caller: Caller {
            role: "anon".into(),
            claims: json!({}).into(),
            token: None,
        },
        ..user(ALICE)
    };
    let put = |actor: &Actor, key: String, upsert: bool| {
        let (core, actor) = (&core, actor.clone());
        async move {
            core.put(
                &actor,
                &spec("private", &key, upsert),
                disk::once(Bytes::from(key.clone())),
            )
            .await
        }
    };
    for i in 0..8 {
        for upsert in [false, true] {
            let key = format!("{ALICE}/{i}-{upsert}");
            assert!(matches!(
                put(&bob, key.clone(), upsert).await,
                Err(StorageError::Denied)
            ));
            assert!(matches!(
                put(&anon, key.clone(), upsert).await,
                Err(StorageError::Denied)
            ));
            put(&alice, key.clone(), upsert).await.unwrap();
            // service_role bypasses row-level security: it may overwrite Alice's file.
            put(&service(), key.clone(), true).await.unwrap();
            assert!(matches!(
                put(&bob, key.clone(), true).await,
                Err(StorageError::Denied)
            ));
            assert_eq!(
                read(&core, &alice, "private", &key).await.unwrap(),
                key.as_bytes()
            );
        }
    }
    t.admin()
        .batch_execute("drop policy own_write on storage.objects")
        .await
        .unwrap();
    assert!(matches!(
        put(&alice, format!("{ALICE}/after"), false).await,
        Err(StorageError::Denied)
    ));
    put(&service(), format!("{ALICE}/after"), false)
        .await
        .unwrap();
}

/// Issue #12: of 20 parallel 2 MiB overwrites of one key, 4–8 left files no row referred to until the
/// orphan sweep: the row statement's view of the version it replaced predated a concurrent commit,
/// so the version actually replaced was never removed. Streamed (2 MiB) and small (one-transaction)
/// writes alike: afterwards exactly one file per live object version, with no sweep.
#[tokio::test]
async fn parallel_overwrites_of_one_key_leave_no_unreferenced_file() {
    let t = TestDb::new().await;
    let core = storage::core_of(&t.state);
    let svc = service();
    core.create_bucket(&svc, "race", "race", &BucketSpec::default())
        .await
        .unwrap();
    for (key, size) in [("big", 2 << 20), ("small", 1000)] {
        // The key exists first, so every writer's check sees it and all of them may win in turn.
        core.put(
            &svc,
            &spec("race", key, true),
            disk::once(Bytes::from(vec![0u8; size])),
        )
        .await
        .unwrap();
        let writers = (0..20u8).map(|i| {
            let core = core.clone();
            let svc = svc.clone();
            let s = declared(spec("race", key, true), size);
            tokio::spawn(async move {
                core.put(&svc, &s, disk::once(Bytes::from(vec![i + 1; size])))
                    .await
            })
        });
        let mut ok = 0;
        for w in futures_util::future::join_all(writers).await {
            match w.unwrap() {
                Ok(_) => ok += 1,
                // A writer may lose the key to another (answered, nothing kept); never an error.
                Err(StorageError::Conflict) => {}
                Err(e) => panic!("{key}: {e}"),
            }
        }
        assert!(ok >= 1, "{key}");
        let live = core.head(&svc, "race", key).await.unwrap();
        let files: Vec<BlobKey> = blobs(&core)
            .await
            .into_iter()
            .filter(|b| matches!(b, BlobKey::Object { id, .. } if *id == live.id))
            .collect();
        assert_eq!(
            files,
            vec![live.blob()],
            "{key}: files besides the live version"
        );
        let bytes = read(&core, &svc, "race", key).await.unwrap();
        assert_eq!(bytes.len(), size);
        assert!(
            bytes.iter().all(|b| *b == bytes[0]),
            "{key}: one writer's bytes, whole"
        );
    }
    let rows: i64 = t
        .value(
            "select count(*) from storage.objects where bucket_id = 'race'",
            &[],
        )
        .await;
    assert_eq!(rows, 2);
    assert_eq!(blobs(&core).await.len(), 2, "one file per row");
}
