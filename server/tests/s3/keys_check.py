"""Object keys through both storage doors (issue #12): `..` segments are accepted literally by the S3
listener and by /storage/v1 alike — written through one door, read through the other — and a NUL
byte in a key, a prefix or a bucket, or a session token whose role does not exist, is a 4xx in S3's
XML (never a 500).

Driven by server/tests/storage_keys.rs. Env: S3_URL, S3_KEY, S3_SECRET (the operator pair), API_URL
(the main listener), SERVICE_JWT (a service_role token), S3_SESSION_KEY, NOROLE_JWT (a valid token
whose role does not exist). The last line is "N passed, 0 failed".
"""
import os
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

URL = os.environ["S3_URL"]
API = os.environ["API_URL"] + "/storage/v1"
SERVICE = os.environ["SERVICE_JWT"]
BUCKET = "keys"
CFG = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})

s3 = boto3.client("s3", endpoint_url=URL, aws_access_key_id=os.environ["S3_KEY"],
                  aws_secret_access_key=os.environ["S3_SECRET"], region_name="us-east-1", config=CFG)
passed = 0


def check(name, ok, detail=""):
    global passed
    if not ok:
        raise AssertionError(f"{name}: {detail}")
    passed += 1


def api(method, path, body=None):
    req = urllib.request.Request(API + path, data=body, method=method,
                                 headers={"Authorization": "Bearer " + SERVICE,
                                          "Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def s3_error(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{fn.__name__} {kw} should have failed")


s3.create_bucket(Bucket=BUCKET)

# `..` written over S3, read over S3 and over the storage API (percent-encoded: URL clients drop
# literal dot segments), and listed as written.
s3.put_object(Bucket=BUCKET, Key="x/../y.txt", Body=b"via-s3")
got = s3.get_object(Bucket=BUCKET, Key="x/../y.txt")["Body"].read()
check("S3 reads its .. key", got == b"via-s3", got)
check("no y.txt appeared", s3_error(s3.head_object, Bucket=BUCKET, Key="y.txt")[1] == 404)
status, body = api("GET", f"/object/{BUCKET}/x/%2E%2E/y.txt")
check("the API reads the S3 .. key", (status, body) == (200, b"via-s3"), (status, body))
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
check("listed as written", keys == ["x/../y.txt"], keys)

# `..` written over the API, read over S3.
status, body = api("POST", f"/object/{BUCKET}/p/%2E%2E/q.txt", b"via-api")
check("the API accepts a .. key", status == 200, (status, body))
got = s3.get_object(Bucket=BUCKET, Key="p/../q.txt")["Body"].read()
check("S3 reads the API .. key", got == b"via-api", got)
# A leading `..` stays inside the bucket: it is part of the key, not a way to another bucket.
status, body = api("POST", f"/object/{BUCKET}/../escape.txt", b"x")
check("a leading .. is a key in the bucket", status == 200 and b'"keys/../escape.txt"' in body,
      (status, body))
got = s3.get_object(Bucket=BUCKET, Key="../escape.txt")["Body"].read()
check("S3 reads it in the same bucket", got == b"x", got)

# NUL bytes: 400 in S3's dialect on every operation, never a 500.
for name, fn, kw in [
    ("GetObject", s3.get_object, {"Bucket": BUCKET, "Key": "a\x00b"}),
    ("HeadObject", s3.head_object, {"Bucket": BUCKET, "Key": "a\x00b"}),
    ("PutObject", s3.put_object, {"Bucket": BUCKET, "Key": "a\x00b", "Body": b"x"}),
    ("DeleteObject", s3.delete_object, {"Bucket": BUCKET, "Key": "a\x00b"}),
    ("ListObjectsV2 prefix", s3.list_objects_v2, {"Bucket": BUCKET, "Prefix": "a\x00"}),
    ("CopyObject source", s3.copy_object, {"Bucket": BUCKET, "Key": "c",
                                           "CopySource": {"Bucket": BUCKET, "Key": "a\x00b"}}),
    ("CreateMultipartUpload", s3.create_multipart_upload, {"Bucket": BUCKET, "Key": "a\x00b"}),
]:
    code, status = s3_error(fn, **kw)
    check(f"NUL in {name}", 400 <= status < 500 and code != "InternalError", (code, status))

# A validly signed session token whose role does not exist: a 4xx, not a 500.
norole = boto3.client("s3", endpoint_url=URL, aws_access_key_id="project-ref",
                      aws_secret_access_key=os.environ["S3_SESSION_KEY"],
                      aws_session_token=os.environ["NOROLE_JWT"], region_name="us-east-1", config=CFG)
for name, fn, kw in [
    ("GetObject", norole.get_object, {"Bucket": BUCKET, "Key": "x/../y.txt"}),
    ("ListObjectsV2", norole.list_objects_v2, {"Bucket": BUCKET}),
    ("PutObject", norole.put_object, {"Bucket": BUCKET, "Key": "z", "Body": b"x"}),
]:
    code, status = s3_error(fn, **kw)
    check(f"unknown role: {name}", 400 <= status < 500 and code != "InternalError", (code, status))

print(f"{passed} passed, 0 failed")
