"""A user's JWT as the S3 session token (Supabase's session-token access): the request is signed with
the S3 session key (`doska keys` prints it as s3_session_key; any access key id), carries the JWT as
X-Amz-Security-Token, and acts as that user under the storage policies.

Env: S3_URL, S3_SESSION_KEY, S3_USER (the user's id), S3_USER_JWT, S3_EXPIRED_JWT, S3_FORGED_JWT (signed
with another secret), S3_OPERATOR_KEY/SECRET. The bucket `userkeys` lets a user write and read only
under `<their id>/`.
"""
import os
import sys
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

URL = os.environ["S3_URL"]
USER = os.environ["S3_USER"]


def client(token, secret=os.environ["S3_SESSION_KEY"], key="project-ref", signature_version=None):
    return boto3.client(
        "s3", endpoint_url=URL, aws_access_key_id=key, aws_secret_access_key=secret,
        aws_session_token=token, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      signature_version=signature_version))


def error_of(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        err = e.response["Error"]
        return err["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"], err.get("Message", "")
    raise AssertionError(f"{fn.__name__} should have failed")


def fetch(url):
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


operator = boto3.client(
    "s3", endpoint_url=URL, aws_access_key_id=os.environ["S3_OPERATOR_KEY"],
    aws_secret_access_key=os.environ["S3_OPERATOR_SECRET"], region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}))
operator.put_object(Bucket="userkeys", Key="someone-else/private.txt", Body=b"not yours")

user = client(os.environ["S3_USER_JWT"])
checks = 0

# What the policy allows: write, read, list under the user's own folder.
user.put_object(Bucket="userkeys", Key=f"{USER}/session.txt", Body=b"via session token")
assert user.get_object(Bucket="userkeys", Key=f"{USER}/session.txt")["Body"].read() == b"via session token"
keys = [o["Key"] for o in user.list_objects_v2(Bucket="userkeys").get("Contents", [])]
assert "someone-else/private.txt" not in keys and f"{USER}/session.txt" in keys, keys
checks += 1

# What it does not: writing elsewhere is AccessDenied 403; another's file is not even visible.
code, status, _ = error_of(user.put_object, Bucket="userkeys", Key="someone-else/x.txt", Body=b"x")
assert (code, status) == ("AccessDenied", 403), (code, status)
code, status, _ = error_of(user.get_object, Bucket="userkeys", Key="someone-else/private.txt")
assert (code, status) == ("NoSuchKey", 404), (code, status)
# Deleting another's file deletes nothing (RLS shows the user no such row).
user.delete_object(Bucket="userkeys", Key="someone-else/private.txt")
assert operator.get_object(Bucket="userkeys", Key="someone-else/private.txt")["Body"].read() == b"not yours"
code, status, _ = error_of(user.create_bucket, Bucket="not-allowed")
assert (code, status) == ("AccessDenied", 403), (code, status)
checks += 1

# A presigned URL (SigV4: s3s 0.14 does not fold a session token into SigV2's string to sign) carries
# the token in its query and acts as the user too.
user = client(os.environ["S3_USER_JWT"], signature_version="s3v4")
url = user.generate_presigned_url("get_object", Params={"Bucket": "userkeys", "Key": f"{USER}/session.txt"},
                                  ExpiresIn=60)
assert "x-amz-security-token=" in url.lower(), url
status, body = fetch(url)
assert (status, body) == (200, b"via session token"), (status, body)
url = user.generate_presigned_url("get_object", Params={"Bucket": "userkeys", "Key": "someone-else/private.txt"},
                                  ExpiresIn=60)
status, _ = fetch(url)
assert status == 404, status
checks += 1

# Expired, forged and wrongly signed: 403 with a clear S3 error, before anything runs.
code, status, msg = error_of(client(os.environ["S3_EXPIRED_JWT"]).list_objects_v2, Bucket="userkeys")
assert (code, status) == ("AccessDenied", 403) and "expired" in msg, (code, status, msg)
code, status, msg = error_of(client(os.environ["S3_FORGED_JWT"]).put_object, Bucket="userkeys",
                             Key=f"{USER}/forged.txt", Body=b"x")
assert (code, status) == ("AccessDenied", 403) and "signature" in msg, (code, status, msg)
code, status, msg = error_of(client("not-a-jwt").list_buckets)
assert (code, status) == ("AccessDenied", 403) and "session token" in msg, (code, status, msg)
code, status, _ = error_of(client(os.environ["S3_USER_JWT"], secret="not-the-session-key").list_buckets)
assert (code, status) == ("SignatureDoesNotMatch", 403), (code, status)
checks += 1

print(f"session token: {checks} passed, 0 failed")
sys.exit(0)
