"""The base of the boto3 S3 test classes: one live doska per class with an S3 listener and one key
(`KEY`/`SECRET`, set per class), a signed path-style client `s3`, an unsigned one `anonymous`, and
`error()`, which calls a boto3 method that must be refused and returns (HTTP status, S3 code).
A class sets `DOSKA_ARGS` (more `doska serve` flags), `MIGRATIONS` ((name, SQL) pairs after the
REST fixture) and `VALIDATE` (False: boto3 sends what it would refuse itself, so doska's answer is
what is tested)."""

import unittest

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from test_rest_smoke import Doska


class S3Case(unittest.TestCase):
    KEY = "DOSKAPYTESTKEY"
    SECRET = "doska-py-test-secret-access-key"
    DOSKA_ARGS = ()
    MIGRATIONS = ()
    VALIDATE = True

    @classmethod
    def setUpClass(cls):
        cls.doska = Doska(
            ["--s3-listen", "127.0.0.1:0", "--s3-access-key-id", cls.KEY, "--s3-secret-access-key", cls.SECRET,
             *cls.DOSKA_ARGS],
            extra_migrations=list(cls.MIGRATIONS),
        )
        config = dict(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
        cls.s3 = boto3.client(
            "s3", endpoint_url=cls.doska.s3_url, aws_access_key_id=cls.KEY, aws_secret_access_key=cls.SECRET,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", parameter_validation=cls.VALIDATE, **config),
        )
        cls.anonymous = boto3.client(
            "s3", endpoint_url=cls.doska.s3_url, region_name="us-east-1",
            config=Config(signature_version=UNSIGNED, **config),
        )

    @classmethod
    def tearDownClass(cls):
        cls.doska.stop()

    def error(self, fn, **kwargs):
        with self.assertRaises(ClientError) as ctx:
            fn(**kwargs)
        r = ctx.exception.response
        return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]
