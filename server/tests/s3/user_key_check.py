"""A key from `doska s3-keys create --user ID` acts as that user under the storage policies.

Env: S3_URL, S3_KEY, S3_SECRET (the user's key), S3_OPERATOR_KEY/SECRET, S3_USER (the user's id), S3_EXPECT ("active" or
"revoked"). The bucket `userkeys` lets a user write and read only under `<their id>/`.
"""
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client(
    "s3", endpoint_url=os.environ["S3_URL"], aws_access_key_id=os.environ["S3_KEY"],
    aws_secret_access_key=os.environ["S3_SECRET"], region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
user = os.environ["S3_USER"]


def code_of(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


if os.environ["S3_EXPECT"] == "revoked":
    assert code_of(s3.list_buckets) == "InvalidAccessKeyId", "a revoked key must not work"
else:
    operator = boto3.client(
        "s3", endpoint_url=os.environ["S3_URL"], aws_access_key_id=os.environ["S3_OPERATOR_KEY"],
        aws_secret_access_key=os.environ["S3_OPERATOR_SECRET"], region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}))
    operator.put_object(Bucket="userkeys", Key="operator/secret.txt", Body=b"secret")
    s3.put_object(Bucket="userkeys", Key=f"{user}/mine.txt", Body=b"mine")
    assert s3.get_object(Bucket="userkeys", Key=f"{user}/mine.txt")["Body"].read() == b"mine"
    assert code_of(s3.put_object, Bucket="userkeys", Key="someone-else/x.txt", Body=b"x") == "AccessDenied"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="userkeys").get("Contents", [])]
    assert keys == [f"{user}/mine.txt"], keys
    assert code_of(s3.get_object, Bucket="userkeys", Key="operator/secret.txt") == "NoSuchKey"
    assert code_of(s3.create_bucket, Bucket="not-allowed") == "AccessDenied"
print("user key: 1 passed, 0 failed")
sys.exit(0)
