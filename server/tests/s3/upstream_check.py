"""boto3 through a doska whose bytes live on an S3 backend (`--storage-backend s3`).

Driven by server/tests/storage_upstream.rs, which starts the backend (another doska's S3 listener)
and the doska under test, and passes S3_URL, S3_KEY, S3_SECRET (the doska under test's S3 door) and
BUCKET. Stores, reads (whole and by ranges), uploads in parts, copies and aborts; the last lines are
"RESULT <json>" (each key with the SHA-256 of its bytes, for the Rust side to find them in the
backend) and "N passed, 0 failed". Every check raises on failure.
"""
import hashlib
import json
import os

import boto3
from botocore.config import Config

URL = os.environ["S3_URL"]
BUCKET = os.environ["BUCKET"]
s3 = boto3.client(
    "s3",
    endpoint_url=URL,
    aws_access_key_id=os.environ["S3_KEY"],
    aws_secret_access_key=os.environ["S3_SECRET"],
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
passed = 0
stored = {}


def check(name, cond, detail=""):
    global passed
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    passed += 1


def body(key, **kw):
    return s3.get_object(Bucket=BUCKET, Key=key, **kw)["Body"].read()


s3.create_bucket(Bucket=BUCKET)

small = os.urandom(3000)
r = s3.put_object(Bucket=BUCKET, Key="boto/small.bin", Body=small)
check("put etag is the md5", r["ETag"].strip('"') == hashlib.md5(small).hexdigest(), r["ETag"])
check("get small", body("boto/small.bin") == small)
check("range", body("boto/small.bin", Range="bytes=100-199") == small[100:200])
check("suffix range", body("boto/small.bin", Range="bytes=-10") == small[-10:])
stored["boto/small.bin"] = hashlib.sha256(small).hexdigest()

# A multipart upload: three parts, read back whole and across the parts' boundaries.
parts_data = [os.urandom(5 << 20), os.urandom(5 << 20), os.urandom(1 << 20)]
whole = b"".join(parts_data)
up = s3.create_multipart_upload(Bucket=BUCKET, Key="boto/big.bin")
etags = []
for i, data in enumerate(parts_data, start=1):
    p = s3.upload_part(Bucket=BUCKET, Key="boto/big.bin", UploadId=up["UploadId"], PartNumber=i, Body=data)
    etags.append({"PartNumber": i, "ETag": p["ETag"]})
done = s3.complete_multipart_upload(
    Bucket=BUCKET, Key="boto/big.bin", UploadId=up["UploadId"], MultipartUpload={"Parts": etags}
)
check("multipart etag", done["ETag"].strip('"').endswith("-3"), done["ETag"])
check("multipart read", hashlib.sha256(body("boto/big.bin")).digest() == hashlib.sha256(whole).digest())
a, b = (5 << 20) - 7, (10 << 20) + 9
check("range across parts", body("boto/big.bin", Range=f"bytes={a}-{b}") == whole[a : b + 1])
head = s3.head_object(Bucket=BUCKET, Key="boto/big.bin")
check("head size", head["ContentLength"] == len(whole), head["ContentLength"])
stored["boto/big.bin"] = hashlib.sha256(whole).hexdigest()

# Copy: a new object with the same bytes and ETag.
c = s3.copy_object(Bucket=BUCKET, Key="boto/copy.bin", CopySource={"Bucket": BUCKET, "Key": "boto/big.bin"})
check("copy etag", c["CopyObjectResult"]["ETag"] == done["ETag"], c)
check("copy read", body("boto/copy.bin") == whole)
stored["boto/copy.bin"] = hashlib.sha256(whole).hexdigest()

# An aborted upload leaves nothing listed.
up = s3.create_multipart_upload(Bucket=BUCKET, Key="boto/aborted.bin")
s3.upload_part(Bucket=BUCKET, Key="boto/aborted.bin", UploadId=up["UploadId"], PartNumber=1, Body=os.urandom(1 << 20))
s3.abort_multipart_upload(Bucket=BUCKET, Key="boto/aborted.bin", UploadId=up["UploadId"])
check("no uploads left", not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads"))

keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="boto/")["Contents"]]
check("listing", keys == ["boto/big.bin", "boto/copy.bin", "boto/small.bin"], keys)

print("RESULT " + json.dumps(stored))
print(f"{passed} passed, 0 failed")
