"""What browsers and anonymous readers do against doska's S3 listener, with boto3 and plain HTTP
against a live doska binary: CORS (Put/Get/DeleteBucketCors, OPTIONS preflights answered from the
bucket's rules, the rules' headers on actual requests and on errors, a presigned PUT from another
origin), POST object (form uploads with a signed policy document: SigV4 and v2, conditions, size
range, success status and redirect), and ACLs as doska enforces them (private and public-read map to
the bucket's public flag; anonymous reads of a public bucket; the rest refused), with public access
blocks. Run: python -m unittest discover server/tests/py (DOSKA_BIN picks the binary).
"""

import base64
import datetime
import hashlib
import hmac
import json
import unittest
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET

from s3_case import S3Case

KEY = "DOSKAPYBROWSERKEY"
SECRET = "doska-py-browser-secret-access-key"


def http(method, url, headers=None, body=None):
    """(status, headers, body) of one plain HTTP request, errors included."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def code_of(body):
    return ET.fromstring(body).findtext("Code")


def form(fields, file_body, filename="upload.txt"):
    """A multipart/form-data body: the fields in order, then the file (S3 reads fields after it not)."""
    boundary = "----doska" + uuid.uuid4().hex
    out = b""
    for k, v in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + file_body + f"\r\n--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class S3Browser(S3Case):
    KEY, SECRET = KEY, SECRET

    def bucket(self, **kwargs):
        name = "b-" + uuid.uuid4().hex[:12]
        self.s3.create_bucket(Bucket=name, **kwargs)
        return name

    # ---- CORS -------------------------------------------------------------------------------

    def test_cors_rules_round_trip_and_bad_rules_are_refused(self):
        b = self.bucket()
        self.assertEqual(self.error(self.s3.get_bucket_cors, Bucket=b), (404, "NoSuchCORSConfiguration"))
        rules = [
            {"AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["https://app.example"], "AllowedHeaders": ["*"],
             "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600, "ID": "uploads"},
            {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]},
        ]
        self.s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": rules})
        self.assertEqual(self.s3.get_bucket_cors(Bucket=b)["CORSRules"], rules)
        for bad, code in [
            ({"AllowedMethods": ["PATCH"], "AllowedOrigins": ["*"]}, "InvalidRequest"),
            ({"AllowedMethods": ["GET"], "AllowedOrigins": ["*.a.*"]}, "InvalidRequest"),
            ({"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "AllowedHeaders": ["x-*-*"]}, "InvalidRequest"),
            ({"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "MaxAgeSeconds": -1}, "InvalidArgument"),
        ]:
            self.assertEqual(
                self.error(self.s3.put_bucket_cors, Bucket=b, CORSConfiguration={"CORSRules": [bad]}), (400, code)
            )
        # A refused configuration changes nothing.
        self.assertEqual(self.s3.get_bucket_cors(Bucket=b)["CORSRules"], rules)
        self.assertEqual(
            self.error(self.s3.put_bucket_cors, Bucket="no-such-bucket", CORSConfiguration={"CORSRules": rules}),
            (404, "NoSuchBucket"),
        )
        self.s3.delete_bucket_cors(Bucket=b)
        self.assertEqual(self.error(self.s3.get_bucket_cors, Bucket=b), (404, "NoSuchCORSConfiguration"))

    def test_cors_preflight_is_answered_from_the_bucket_rules(self):
        b = self.bucket()
        url = f"{self.doska.s3_url}/{b}/some/key.txt"
        ask = {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"}
        # No rules yet: refused, without CORS headers.
        status, headers, body = http("OPTIONS", url, ask)
        self.assertEqual((status, code_of(body)), (403, "AccessForbidden"))
        self.assertIsNone(headers.get("Access-Control-Allow-Origin"))
        self.s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": [
            {"AllowedMethods": ["PUT", "POST"], "AllowedOrigins": ["https://*.example"],
             "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 300},
            {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]},
        ]})
        status, headers, _ = http("OPTIONS", url, {**ask, "Access-Control-Request-Headers": "Content-Type, X-Amz-Meta-A"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["Access-Control-Allow-Origin"], "https://app.example")
        self.assertEqual(headers["Access-Control-Allow-Methods"], "PUT, POST")
        self.assertEqual(headers["Access-Control-Allow-Headers"], "content-type, x-amz-meta-a")
        self.assertEqual(headers["Access-Control-Expose-Headers"], "ETag")
        self.assertEqual(headers["Access-Control-Max-Age"], "300")
        self.assertEqual(headers["Access-Control-Allow-Credentials"], "true")
        self.assertIn("Origin", headers["Vary"])
        # The `*` origin answers `*`.
        status, headers, _ = http("OPTIONS", url, {"Origin": "https://other.site", "Access-Control-Request-Method": "GET"})
        self.assertEqual((status, headers["Access-Control-Allow-Origin"]), (200, "*"))
        for refused in [
            {"Origin": "https://evil.site", "Access-Control-Request-Method": "PUT"},  # origin
            {"Origin": "https://app.example", "Access-Control-Request-Method": "DELETE"},  # method
            {**ask, "Access-Control-Request-Headers": "authorization"},  # a header not allowed
        ]:
            status, headers, body = http("OPTIONS", url, refused)
            self.assertEqual((status, code_of(body)), (403, "AccessForbidden"), refused)
            self.assertIsNone(headers.get("Access-Control-Allow-Origin"))
        for incomplete in [{}, {"Origin": "https://app.example"}]:
            status, _, body = http("OPTIONS", url, incomplete)
            self.assertEqual((status, code_of(body)), (400, "BadRequest"))
        status, _, body = http("OPTIONS", f"{self.doska.s3_url}/no-such-bucket/k", ask)
        self.assertEqual((status, code_of(body)), (404, "NoSuchBucket"))

    def test_a_presigned_put_from_another_origin_gets_cors_headers(self):
        b = self.bucket()
        self.s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": [
            {"AllowedMethods": ["PUT", "GET"], "AllowedOrigins": ["https://app.example"], "AllowedHeaders": ["*"],
             "ExposeHeaders": ["ETag"]},
        ]})
        url = self.s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "avatar.png"}, ExpiresIn=300)
        origin = {"Origin": "https://app.example"}
        # What a browser sends: the preflight (unsigned, with the presigned query), then the PUT.
        status, headers, _ = http("OPTIONS", url, {**origin, "Access-Control-Request-Method": "PUT",
                                                   "Access-Control-Request-Headers": "content-type"})
        self.assertEqual((status, headers["Access-Control-Allow-Origin"]), (200, "https://app.example"))
        status, headers, _ = http("PUT", url, origin, b"image bytes")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Access-Control-Allow-Origin"], "https://app.example")
        self.assertEqual(headers["Access-Control-Expose-Headers"], "ETag")
        self.assertEqual(self.s3.get_object(Bucket=b, Key="avatar.png")["Body"].read(), b"image bytes")
        # Errors carry them too, so the page can read why; another origin gets none.
        missing = self.s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "missing"}, ExpiresIn=300)
        status, headers, body = http("GET", missing, origin)
        self.assertEqual((status, code_of(body)), (404, "NoSuchKey"))
        self.assertEqual(headers["Access-Control-Allow-Origin"], "https://app.example")
        status, headers, _ = http("GET", missing, {"Origin": "https://evil.site"})
        self.assertEqual(status, 404)
        self.assertIsNone(headers.get("Access-Control-Allow-Origin"))
        # Without rules, an actual request carries no CORS headers.
        self.s3.delete_bucket_cors(Bucket=b)
        status, headers, _ = http("GET", missing, origin)
        self.assertIsNone(headers.get("Access-Control-Allow-Origin"))

    # ---- POST object --------------------------------------------------------------------------

    def post(self, bucket, fields, body=b"form bytes"):
        data, headers = form(fields, body)
        return http("POST", f"{self.doska.s3_url}/{bucket}", headers, data)

    def presigned_post(self, bucket, key, conditions=None, fields=None, expires=300):
        p = self.s3.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires)
        return list(p["fields"].items())

    def test_post_object_with_a_sigv4_policy(self):
        b = self.bucket()
        fields = self.presigned_post(
            b, "uploads/${filename}", conditions=[["starts-with", "$key", "uploads/"],
                                                  ["content-length-range", 1, 64],
                                                  {"Content-Type": "text/plain"}],
            fields={"Content-Type": "text/plain"},
        )
        status, _, body = self.post(b, fields)
        self.assertEqual((status, body), (204, b""))
        got = self.s3.get_object(Bucket=b, Key="uploads/upload.txt")
        self.assertEqual((got["Body"].read(), got["ContentType"]), (b"form bytes", "text/plain"))
        # The size range is the policy's.
        status, _, body = self.post(b, fields, b"x" * 65)
        self.assertEqual((status, code_of(body)), (400, "EntityTooLarge"))
        status, _, body = self.post(b, fields, b"")
        self.assertEqual(status, 400, body)
        # A field the policy does not allow, a tampered signature, an expired policy: refused.
        changed = [(k, "text/html" if k == "Content-Type" else v) for k, v in fields]
        self.assertEqual(self.post(b, changed)[0], 403)
        tampered = [(k, ("0" * 64) if k == "x-amz-signature" else v) for k, v in fields]
        status, _, body = self.post(b, tampered)
        self.assertEqual((status, code_of(body)), (403, "SignatureDoesNotMatch"))
        expired = self.presigned_post(b, "late.txt", expires=-10)
        status, _, body = self.post(b, expired)
        self.assertEqual((status, code_of(body)), (403, "AccessDenied"))
        self.assertEqual(self.error(self.s3.head_object, Bucket=b, Key="late.txt")[0], 404)

    def test_post_object_success_status_and_redirect(self):
        b = self.bucket()
        fields = self.presigned_post(b, "created.txt", fields={"success_action_status": "201"},
                                     conditions=[{"success_action_status": "201"}])
        status, _, body = self.post(b, fields)
        self.assertEqual(status, 201)
        self.assertEqual(ET.fromstring(body).findtext("Key"), "created.txt")
        to = "https://app.example/done"
        fields = self.presigned_post(b, "moved.txt", fields={"success_action_redirect": to},
                                     conditions=[{"success_action_redirect": to}])
        data, headers = form(fields, b"r")

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        with self.assertRaises(urllib.error.HTTPError) as ctx:
            opener.open(urllib.request.Request(f"{self.doska.s3_url}/{b}", data=data, headers=headers, method="POST"))
        self.assertEqual(ctx.exception.code, 303)
        location = ctx.exception.headers["Location"]
        self.assertTrue(location.startswith(to + "?"), location)
        self.assertIn("key=moved.txt", location)
        self.assertEqual(self.s3.get_object(Bucket=b, Key="moved.txt")["Body"].read(), b"r")

    def test_post_object_with_a_v2_policy_and_its_acl(self):
        b = self.bucket()
        expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

        def signed(key, acl, expiration=expires):
            policy = base64.b64encode(json.dumps({"expiration": expiration, "conditions": [
                {"bucket": b}, ["starts-with", "$key", ""], {"acl": acl}]}).encode())
            signature = base64.b64encode(hmac.new(SECRET.encode(), policy, hashlib.sha1).digest()).decode()
            return [("key", key), ("AWSAccessKeyId", KEY), ("acl", acl), ("policy", policy.decode()),
                    ("signature", signature)]

        self.assertEqual(self.post(b, signed("v2.txt", "private"))[0], 204)
        self.assertEqual(self.s3.get_object(Bucket=b, Key="v2.txt")["Body"].read(), b"form bytes")
        # An object cannot be public alone in a private bucket: refused, nothing stored.
        status, _, body = self.post(b, signed("public.txt", "public-read"))
        self.assertEqual((status, code_of(body)), (501, "NotImplemented"))
        self.assertEqual(self.error(self.s3.head_object, Bucket=b, Key="public.txt")[0], 404)
        # A policy's expiration is an ISO 8601 UTC time; a policy without its signature proves nothing.
        status, _, body = self.post(b, signed("date.txt", "private", expiration="2030-01-01 00:00:00+00:00"))
        self.assertEqual((status, code_of(body)), (400, "InvalidPolicyDocument"))
        unsigned = [(k, v) for k, v in signed("nosig.txt", "private") if k != "signature"]
        status, _, body = self.post(b, unsigned)
        self.assertEqual((status, code_of(body)), (400, "InvalidArgument"))
        # Posted to another bucket than the policy's: refused as a broken condition.
        other = self.bucket()
        status, _, body = self.post(other, signed("other.txt", "private") + [("bucket", b)])
        self.assertEqual((status, code_of(body)), (403, "AccessDenied"))
        for key in ["date.txt", "nosig.txt"]:
            self.assertEqual(self.error(self.s3.head_object, Bucket=b, Key=key)[0], 404)
        self.assertEqual(self.error(self.s3.head_object, Bucket=other, Key="other.txt")[0], 404)
        # Unsigned, to a private bucket: refused.
        status, _, body = self.post(b, [("key", "anon.txt")])
        self.assertEqual((status, code_of(body)), (403, "AccessDenied"))

    # ---- ACLs, anonymous access, public access blocks ----------------------------------------

    def grants(self, acl):
        return sorted((g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"]) for g in acl["Grants"])

    def test_public_read_is_the_bucket_public_flag(self):
        b = self.bucket(ACL="public-read")
        all_users = ("http://acs.amazonaws.com/groups/global/AllUsers", "READ")
        self.assertEqual(self.grants(self.s3.get_bucket_acl(Bucket=b)), sorted([("doska", "FULL_CONTROL"), all_users]))
        self.s3.put_object(Bucket=b, Key="k", Body=b"public bytes", ACL="public-read")
        self.assertEqual(self.grants(self.s3.get_object_acl(Bucket=b, Key="k")), sorted([("doska", "FULL_CONTROL"), all_users]))
        # Anyone may read; writing stays the storage policies' (none here: anon may not).
        self.assertEqual(self.anonymous.get_object(Bucket=b, Key="k")["Body"].read(), b"public bytes")
        self.assertEqual(self.anonymous.head_object(Bucket=b, Key="k")["ContentLength"], 12)
        self.assertEqual(self.error(self.anonymous.get_object, Bucket=b, Key="missing"), (404, "NoSuchKey"))
        self.assertEqual(self.error(self.anonymous.put_object, Bucket=b, Key="k", Body=b"x"), (403, "AccessDenied"))
        self.assertEqual(self.anonymous.get_object(Bucket=b, Key="k")["Body"].read(), b"public bytes")
        # Supabase's public URL serves it too: one flag.
        status, _, body = http("GET", f"{self.doska.url}/storage/v1/object/public/{b}/k")
        self.assertEqual((status, body), (200, b"public bytes"))
        # Back to private: anonymous reads are refused again, on both doors.
        self.s3.put_bucket_acl(Bucket=b, ACL="private")
        self.assertEqual(self.grants(self.s3.get_bucket_acl(Bucket=b)), [("doska", "FULL_CONTROL")])
        self.assertEqual(self.error(self.anonymous.get_object, Bucket=b, Key="k"), (403, "AccessDenied"))
        self.assertNotEqual(http("GET", f"{self.doska.url}/storage/v1/object/public/{b}/k")[0], 200)
        self.assertEqual(self.error(self.anonymous.get_object, Bucket="no-such-bucket", Key="k"), (404, "NoSuchBucket"))
        # A refusal of a request that waited for `100 Continue` closes the connection: its body may
        # still come, and must not be read as the next request.
        status, headers, _ = http("PUT", f"{self.doska.s3_url}/{b}/k", {"Expect": "100-continue"}, b"s")
        self.assertEqual((status, headers["Connection"]), (403, "close"))
        # Anonymous bucket listing is anon's, under the policies (none: no buckets).
        self.assertEqual(self.anonymous.list_buckets()["Buckets"], [])

    def test_acls_doska_cannot_enforce_are_refused(self):
        b = self.bucket()
        self.s3.put_object(Bucket=b, Key="k", Body=b"a")
        for acl in ["public-read-write", "authenticated-read"]:
            self.assertEqual(self.error(self.s3.put_bucket_acl, Bucket=b, ACL=acl), (501, "NotImplemented"))
            self.assertEqual(self.error(self.s3.create_bucket, Bucket="b-" + uuid.uuid4().hex[:12], ACL=acl),
                             (501, "NotImplemented"))
        self.assertEqual(
            self.error(self.s3.put_bucket_acl, Bucket=b, GrantRead='id="someone-else"'), (501, "NotImplemented")
        )
        # An object is public exactly when its bucket is.
        self.assertEqual(self.error(self.s3.put_object_acl, Bucket=b, Key="k", ACL="public-read"), (501, "NotImplemented"))
        self.assertEqual(self.error(self.s3.put_object, Bucket=b, Key="p", Body=b"p", ACL="public-read"),
                         (501, "NotImplemented"))
        self.assertEqual(self.error(self.s3.head_object, Bucket=b, Key="p")[0], 404)
        self.s3.put_object_acl(Bucket=b, Key="k", ACL="private")
        self.assertEqual(self.error(self.s3.put_object_acl, Bucket=b, Key="missing", ACL="private"), (404, "NoSuchKey"))
        self.assertEqual(self.error(self.s3.put_bucket_acl, Bucket="no-such-bucket", ACL="private"), (404, "NoSuchBucket"))
        # The bucket stayed private throughout.
        self.assertEqual(self.grants(self.s3.get_bucket_acl(Bucket=b)), [("doska", "FULL_CONTROL")])

    def test_public_access_block(self):
        b = self.bucket()
        absent = self.error(self.s3.get_public_access_block, Bucket=b)
        self.assertEqual(absent, (404, "NoSuchPublicAccessBlockConfiguration"))
        block = {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True,
                 "RestrictPublicBuckets": False}
        self.s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=block)
        self.assertEqual(self.s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"], block)
        # Public ACLs are refused (403, as S3 refuses them), private ones pass.
        for acl in ["public-read", "public-read-write", "authenticated-read"]:
            self.assertEqual(self.error(self.s3.put_bucket_acl, Bucket=b, ACL=acl)[0], 403)
            self.assertEqual(self.error(self.s3.put_object, Bucket=b, Key="o", Body=b"", ACL=acl)[0], 403)
        self.s3.put_object(Bucket=b, Key="o", Body=b"o", ACL="private")
        # IgnorePublicAcls: a public bucket reads as private to anonymous readers, on both doors.
        p = self.bucket(ACL="public-read")
        self.s3.put_object(Bucket=p, Key="k", Body=b"k")
        self.assertEqual(self.anonymous.get_object(Bucket=p, Key="k")["Body"].read(), b"k")
        self.s3.put_public_access_block(Bucket=p, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
        self.assertEqual(self.error(self.anonymous.get_object, Bucket=p, Key="k"), (403, "AccessDenied"))
        self.assertNotEqual(http("GET", f"{self.doska.url}/storage/v1/object/public/{p}/k")[0], 200)
        self.s3.delete_public_access_block(Bucket=p)
        self.assertEqual(self.anonymous.get_object(Bucket=p, Key="k")["Body"].read(), b"k")
        self.assertEqual(self.error(self.s3.get_public_access_block, Bucket=p),
                         (404, "NoSuchPublicAccessBlockConfiguration"))
        self.assertEqual(self.error(self.s3.get_public_access_block, Bucket="no-such-bucket"), (404, "NoSuchBucket"))


if __name__ == "__main__":
    unittest.main()
