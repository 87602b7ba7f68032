"""boto3, with its current default configuration, against a live doska's S3 listener.

Driven by server/tests/storage_s3.rs, which starts `doska serve` (plain and TLS) and passes:
S3_URL, S3_KEY, S3_SECRET, S3_STORAGE_DIR (doska's storage dir, to count its files) and, over TLS,
S3_VERIFY (the self-signed certificate file).
Every check raises on failure; the last line is "N passed, 0 failed".
"""
import hashlib
import io
import os
import ssl
import sys
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from boto3.s3.transfer import TransferConfig

URL = os.environ["S3_URL"]
KEY = os.environ["S3_KEY"]
SECRET = os.environ["S3_SECRET"]
VERIFY = os.environ.get("S3_VERIFY") or None
STORAGE_DIR = os.environ["S3_STORAGE_DIR"]
BUCKET = "suite-" + ("tls" if VERIFY else "plain")


def client(secret=SECRET):
    return boto3.client(
        "s3",
        endpoint_url=URL,
        aws_access_key_id=KEY,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        verify=VERIFY if VERIFY else True,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


s3 = client()


def error_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{fn.__name__} should have failed")


def stored_files():
    """How many blob files doska's storage dir holds."""
    data = os.path.join(STORAGE_DIR, "data")
    if not os.path.isdir(data):
        return 0
    return sum(len(os.listdir(os.path.join(data, shard))) for shard in os.listdir(data))


def fetch(url):
    ctx = ssl.create_default_context(cafile=VERIFY) if VERIFY else None
    try:
        with urllib.request.urlopen(url, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_wrong_secret_and_unsigned_are_refused():
    code, status = error_of(client("not-the-secret").list_buckets)
    assert status == 403 and code == "SignatureDoesNotMatch", (code, status)
    # Unsigned: a private bucket is refused; the bucket list is `anon`'s, under the storage
    # policies (none here, so it is empty).
    private = BUCKET + "-private"
    s3.create_bucket(Bucket=private)
    status, _ = fetch(URL + "/" + private + "/x")
    assert status == 403, status
    s3.delete_bucket(Bucket=private)
    status, body = fetch(URL + "/")
    assert status == 200 and b"<Bucket>" not in body, (status, body)


def test_buckets():
    s3.create_bucket(Bucket=BUCKET)
    s3.head_bucket(Bucket=BUCKET)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert BUCKET in names, names
    s3.get_bucket_location(Bucket=BUCKET)
    code, status = error_of(s3.head_bucket, Bucket="no-such-bucket")
    assert status == 404, (code, status)
    code, _ = error_of(s3.list_objects_v2, Bucket="no-such-bucket")
    assert code == "NoSuchBucket", code


def test_put_get_head_with_metadata():
    body = b"hello, doska"
    r = s3.put_object(Bucket=BUCKET, Key="a.txt", Body=body, ContentType="text/plain",
                      Metadata={"owner": "teacher"}, CacheControl="no-cache")
    assert r["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), r["ETag"]
    g = s3.get_object(Bucket=BUCKET, Key="a.txt")
    assert g["Body"].read() == body
    assert g["ContentType"] == "text/plain"
    assert g["Metadata"] == {"owner": "teacher"}, g["Metadata"]
    assert g["ETag"] == r["ETag"]
    h = s3.head_object(Bucket=BUCKET, Key="a.txt")
    assert h["ContentLength"] == len(body)
    assert h["CacheControl"] == "no-cache"
    code, status = error_of(s3.get_object, Bucket=BUCKET, Key="missing")
    assert code == "NoSuchKey" and status == 404, (code, status)
    code, status = error_of(s3.get_object, Bucket=BUCKET, Key="a.txt", IfNoneMatch=r["ETag"])
    assert status == 304, (code, status)
    code, status = error_of(s3.get_object, Bucket=BUCKET, Key="a.txt", IfMatch='"nope"')
    assert status == 412, (code, status)
    # Overwrite.
    s3.put_object(Bucket=BUCKET, Key="a.txt", Body=b"second")
    assert s3.get_object(Bucket=BUCKET, Key="a.txt")["Body"].read() == b"second"


def test_ranged_reads():
    body = bytes(range(256)) * 40
    s3.put_object(Bucket=BUCKET, Key="range.bin", Body=body)
    g = s3.get_object(Bucket=BUCKET, Key="range.bin", Range="bytes=10-19")
    assert g["Body"].read() == body[10:20]
    assert g["ContentRange"] == "bytes 10-19/%d" % len(body), g["ContentRange"]
    assert s3.get_object(Bucket=BUCKET, Key="range.bin", Range="bytes=-5")["Body"].read() == body[-5:]
    assert s3.get_object(Bucket=BUCKET, Key="range.bin", Range="bytes=10200-")["Body"].read() == body[10200:]
    code, status = error_of(s3.get_object, Bucket=BUCKET, Key="range.bin", Range="bytes=99999-")
    assert status == 416, (code, status)


def test_odd_keys_and_listing():
    keys = ["dir/one.txt", "dir/two.txt", "dir/sub/three.txt", "ünïcödé ✓/файл.txt",
            "with space/and+plus&amp.txt", "../../escape-attempt", "top.txt"]
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode())
    for k in keys:
        assert s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() == k.encode(), k
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["dir/one.txt", "dir/two.txt"], r
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["dir/sub/"], r
    # Pages of two via continuation tokens, and the paginator.
    seen, token = [], None
    while True:
        kw = {"Bucket": BUCKET, "MaxKeys": 2}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        seen += [o["Key"] for o in r.get("Contents", [])]
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert seen == sorted(seen, key=lambda k: k.encode()), seen
    assert set(keys) <= set(seen), seen
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, PaginationConfig={"PageSize": 3})
    assert sum(len(p.get("Contents", [])) for p in pages) == len(seen)
    v1 = s3.list_objects(Bucket=BUCKET, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in v1["Contents"]] == ["dir/one.txt", "dir/two.txt"], v1


def test_copy_and_delete_many():
    s3.copy_object(Bucket=BUCKET, Key="copy.txt", CopySource={"Bucket": BUCKET, "Key": "top.txt"})
    assert s3.get_object(Bucket=BUCKET, Key="copy.txt")["Body"].read() == b"top.txt"
    s3.copy_object(Bucket=BUCKET, Key="copy2.txt", CopySource={"Bucket": BUCKET, "Key": "top.txt"},
                   MetadataDirective="REPLACE", ContentType="text/markdown", Metadata={"k": "v"})
    h = s3.head_object(Bucket=BUCKET, Key="copy2.txt")
    assert h["ContentType"] == "text/markdown" and h["Metadata"] == {"k": "v"}, h
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "copy.txt"}, {"Key": "copy2.txt"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["copy.txt", "copy2.txt"], r
    s3.delete_object(Bucket=BUCKET, Key="copy.txt")  # already gone: still 204
    code, _ = error_of(s3.head_object, Bucket=BUCKET, Key="copy.txt")
    assert code == "404", code


def test_presigned_get():
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "top.txt"}, ExpiresIn=60)
    status, body = fetch(url)
    assert status == 200 and body == b"top.txt", (status, body)
    # The same signature for another key must not pass.
    assert "/top.txt?" in url, url
    bad = url.replace("/top.txt?", "/a.txt?")
    status, _ = fetch(bad)
    assert status == 403, status


def test_multipart_64_mib():
    before = stored_files()
    data = os.urandom(64 * 1024 * 1024)
    mib8 = 8 * 1024 * 1024
    cfg = TransferConfig(multipart_threshold=mib8, multipart_chunksize=mib8, max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(data), BUCKET, "big/64mib.bin", Config=cfg)
    h = s3.head_object(Bucket=BUCKET, Key="big/64mib.bin")
    assert h["ContentLength"] == len(data)
    assert h["ETag"].endswith('-8"'), h["ETag"]
    # S3's multipart ETag: the MD5 of the parts' MD5s, then -N.
    md5s = b"".join(hashlib.md5(data[i:i + mib8]).digest() for i in range(0, len(data), mib8))
    assert h["ETag"] == '"%s-8"' % hashlib.md5(md5s).hexdigest(), h["ETag"]
    # Kept as its 8 parts: no joined copy.
    assert stored_files() == before + 8, (before, stored_files())
    out = io.BytesIO()
    s3.download_fileobj(BUCKET, "big/64mib.bin", out, Config=cfg)
    assert hashlib.md5(out.getvalue()).digest() == hashlib.md5(data).digest()
    tail = s3.get_object(Bucket=BUCKET, Key="big/64mib.bin", Range="bytes=-100")["Body"].read()
    assert tail == data[-100:]
    # Ranges across part boundaries: two parts, then three.
    for first, last in [(mib8 - 10, mib8 + 9), (mib8 - 1, 3 * mib8), (0, mib8), (5 * mib8 + 7, 7 * mib8 + 3)]:
        g = s3.get_object(Bucket=BUCKET, Key="big/64mib.bin", Range="bytes=%d-%d" % (first, last))
        assert g["ContentRange"] == "bytes %d-%d/%d" % (first, last, len(data)), g["ContentRange"]
        assert g["Body"].read() == data[first:last + 1], (first, last)
    # A copy of a multipart object: same bytes, one new file.
    s3.copy_object(Bucket=BUCKET, Key="big/copy.bin", CopySource={"Bucket": BUCKET, "Key": "big/64mib.bin"})
    g = s3.get_object(Bucket=BUCKET, Key="big/copy.bin", Range="bytes=%d-%d" % (mib8 - 5, mib8 + 4))
    assert g["Body"].read() == data[mib8 - 5:mib8 + 5]
    assert stored_files() == before + 9, (before, stored_files())
    # Overwritten (by a single PUT) and deleted: no file of it stays.
    s3.put_object(Bucket=BUCKET, Key="big/64mib.bin", Body=b"small now")
    assert s3.get_object(Bucket=BUCKET, Key="big/64mib.bin")["Body"].read() == b"small now"
    assert stored_files() == before + 2, (before, stored_files())
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "big/64mib.bin"}, {"Key": "big/copy.bin"}]})
    assert stored_files() == before, (before, stored_files())


def test_multipart_api():
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="parts.bin", ContentType="application/x-test")
    uid = up["UploadId"]
    p1 = s3.upload_part(Bucket=BUCKET, Key="parts.bin", UploadId=uid, PartNumber=1, Body=b"a" * (5 * 1024 * 1024))
    p2 = s3.upload_part(Bucket=BUCKET, Key="parts.bin", UploadId=uid, PartNumber=2, Body=b"tail")
    parts = s3.list_parts(Bucket=BUCKET, Key="parts.bin", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2], parts
    uploads = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
    assert any(u["UploadId"] == uid for u in uploads), uploads
    code, _ = error_of(s3.complete_multipart_upload, Bucket=BUCKET, Key="parts.bin", UploadId=uid,
                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]})
    assert code == "InvalidPart", code
    s3.complete_multipart_upload(Bucket=BUCKET, Key="parts.bin", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    g = s3.get_object(Bucket=BUCKET, Key="parts.bin")
    assert g["ContentType"] == "application/x-test"
    assert g["Body"].read() == b"a" * (5 * 1024 * 1024) + b"tail"
    # UploadPartCopy: a new object from a range of an existing one plus an uploaded part.
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="from-copy.bin")
    c1 = s3.upload_part_copy(Bucket=BUCKET, Key="from-copy.bin", UploadId=up["UploadId"], PartNumber=1,
                             CopySource={"Bucket": BUCKET, "Key": "parts.bin"},
                             CopySourceRange="bytes=0-%d" % (5 * 1024 * 1024 - 1))
    c2 = s3.upload_part(Bucket=BUCKET, Key="from-copy.bin", UploadId=up["UploadId"], PartNumber=2, Body=b"!")
    s3.complete_multipart_upload(Bucket=BUCKET, Key="from-copy.bin", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": c1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": c2["ETag"]}]})
    assert s3.get_object(Bucket=BUCKET, Key="from-copy.bin")["Body"].read() == b"a" * (5 * 1024 * 1024) + b"!"
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="aborted.bin")
    s3.upload_part(Bucket=BUCKET, Key="aborted.bin", UploadId=up["UploadId"], PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=BUCKET, Key="aborted.bin", UploadId=up["UploadId"])
    code, _ = error_of(s3.list_parts, Bucket=BUCKET, Key="aborted.bin", UploadId=up["UploadId"])
    assert code == "NoSuchUpload", code


def test_unsupported_is_not_implemented():
    # Bucket policies are refused (the storage policies decide); none is ever there to read.
    policy = '{"Version": "2012-10-17", "Statement": []}'
    code, status = error_of(s3.put_bucket_policy, Bucket=BUCKET, Policy=policy)
    assert code == "NotImplemented" and status == 501, (code, status)
    code, status = error_of(s3.get_bucket_policy, Bucket=BUCKET)
    assert code == "NoSuchBucketPolicy" and status == 404, (code, status)


def test_delete_bucket_only_when_empty():
    code, _ = error_of(s3.delete_bucket, Bucket=BUCKET)
    assert code == "BucketNotEmpty", code
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": objs, "Quiet": True})
    s3.delete_bucket(Bucket=BUCKET)
    code, _ = error_of(s3.head_bucket, Bucket=BUCKET)
    assert code == "404", code


if __name__ == "__main__":
    tests = [(n, f) for n, f in list(globals().items()) if n.startswith("test_")]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"ok   {name}")
        except Exception as e:  # report every failure, then fail the run
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"boto3: {len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
