"""Bucket versioning, lifecycle rules and GetObjectAttributes, with boto3 (and the storage API's
version list and restore over plain HTTP) against a live doska binary: a versioning round trip
(versions kept on overwrite and delete, delete markers, reads and copies by version id, a version
deleted for good with its bytes, the previous version made current again, suspended buckets' `null`
versions), ListObjectVersions paging, lifecycle configurations validated as S3 does and applied by
the background pass (a lifecycle day is 2 s here), GetObjectAttributes, the storage policies
deciding who sees and restores versions, and each refusal's S3 code. Run: python -m unittest
discover server/tests/py (DOSKA_BIN picks the binary).
"""

import json
import threading
import time
import unittest
import urllib.error
import urllib.request

from botocore.exceptions import ClientError

from s3_case import S3Case

KEY = "DOSKAPYVERSIONKEY"
SECRET = "doska-py-versioning-secret-key"
MIB = 1024 * 1024

# Teachers manage their own materials: the storage policies a TeacherUchit-like app would have.
POLICIES = """
create policy "own materials: read" on storage.objects for select to authenticated
  using (bucket_id = 'materials' and owner_id = auth.uid()::text);
create policy "own materials: upload" on storage.objects for insert to authenticated
  with check (bucket_id = 'materials' and owner_id = auth.uid()::text);
create policy "own materials: replace" on storage.objects for update to authenticated
  using (bucket_id = 'materials' and owner_id = auth.uid()::text);
create policy "own materials: delete" on storage.objects for delete to authenticated
  using (bucket_id = 'materials' and owner_id = auth.uid()::text);
"""


def eventually(check, what, limit=90):
    """Polls `check` until it returns true: the lifecycle pass runs in the background. The limit
    only keeps a broken build from hanging; nothing is asserted about how long it takes."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"never happened: {what}")


class S3Versioning(S3Case):
    KEY, SECRET = KEY, SECRET
    DOSKA_ARGS = ("--storage-lifecycle-day", "2s")
    MIGRATIONS = (("0002_material_policies.sql", POLICIES),)

    def bucket(self, name, versioning=None):
        self.s3.create_bucket(Bucket=name)
        if versioning:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})
        return name

    def body(self, bucket, key, **kw):
        return self.s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()

    def blob_exists(self, version_id):
        return any((self.doska.root / "data" / "storage").rglob(f"*.{version_id}"))

    def history(self, bucket, **kw):
        r = self.s3.list_object_versions(Bucket=bucket, **kw)
        entries = [(v["Key"], v["VersionId"], v["IsLatest"], "v") for v in r.get("Versions", [])]
        entries += [(m["Key"], m["VersionId"], m["IsLatest"], "m") for m in r.get("DeleteMarkers", [])]
        return r, entries

    def test_versioning_round_trip(self):
        b = self.bucket("ver-trip")
        self.assertNotIn("Status", self.s3.get_bucket_versioning(Bucket=b))
        # Written before versioning: the `null` version.
        self.s3.put_object(Bucket=b, Key="doc", Body=b"v0")
        self.s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        self.assertEqual(self.s3.get_bucket_versioning(Bucket=b)["Status"], "Enabled")
        v1 = self.s3.put_object(Bucket=b, Key="doc", Body=b"v1")["VersionId"]
        v2 = self.s3.put_object(Bucket=b, Key="doc", Body=b"v2")["VersionId"]
        self.assertNotIn(v1, ("null", v2))
        self.assertEqual(self.body(b, "doc"), b"v2")
        got = self.s3.get_object(Bucket=b, Key="doc", VersionId=v1)
        self.assertEqual((got["Body"].read(), got["VersionId"]), (b"v1", v1))
        self.assertEqual(self.body(b, "doc", VersionId="null"), b"v0")
        self.assertEqual(self.s3.head_object(Bucket=b, Key="doc", VersionId=v1)["ContentLength"], 2)
        _, entries = self.history(b)
        self.assertEqual(entries, [("doc", v2, True, "v"), ("doc", v1, False, "v"), ("doc", "null", False, "v")])

        # A delete leaves a marker; the versions stay readable.
        gone = self.s3.delete_object(Bucket=b, Key="doc")
        self.assertTrue(gone["DeleteMarker"])
        marker = gone["VersionId"]
        with self.assertRaises(ClientError) as ctx:
            self.s3.get_object(Bucket=b, Key="doc")
        r = ctx.exception.response
        self.assertEqual((r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]), (404, "NoSuchKey"))
        self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"], "true")
        self.assertEqual(self.error(self.s3.get_object, Bucket=b, Key="doc", VersionId=marker), (405, "MethodNotAllowed"))
        self.assertEqual(self.body(b, "doc", VersionId=v2), b"v2")
        _, entries = self.history(b)
        self.assertIn(("doc", marker, True, "m"), entries)
        self.assertIn(("doc", v2, False, "v"), entries)

        # Removing the marker brings v2 back; removing v2 for good makes v1 current and frees its bytes.
        self.s3.delete_object(Bucket=b, Key="doc", VersionId=marker)
        self.assertEqual(self.body(b, "doc"), b"v2")
        self.assertTrue(self.blob_exists(v2))
        self.s3.delete_object(Bucket=b, Key="doc", VersionId=v2)
        self.assertFalse(self.blob_exists(v2), "a version deleted for good keeps no bytes")
        got = self.s3.get_object(Bucket=b, Key="doc")
        self.assertEqual((got["Body"].read(), got["VersionId"]), (b"v1", v1))
        # Deleting it again is no error (S3 is idempotent here).
        self.s3.delete_object(Bucket=b, Key="doc", VersionId=v2)

        # Copy from an old version.
        copied = self.s3.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "doc", "VersionId": "null"})
        self.assertEqual(copied["CopySourceVersionId"], "null")
        self.assertEqual(self.body(b, "copy"), b"v0")

        # Suspended: new writes are the `null` version and replace it; real versions stay.
        self.s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
        self.s3.put_object(Bucket=b, Key="doc", Body=b"s1")
        self.s3.put_object(Bucket=b, Key="doc", Body=b"s2")
        _, entries = self.history(b, Prefix="doc")
        self.assertEqual(sorted(e[1] for e in entries), sorted(["null", v1]))
        self.assertEqual(self.body(b, "doc", VersionId="null"), b"s2")
        self.assertEqual(self.body(b, "doc", VersionId=v1), b"v1")

        # A bucket with versions is not empty; once every version is gone it can go.
        self.assertEqual(self.error(self.s3.delete_bucket, Bucket=b), (409, "BucketNotEmpty"))
        _, entries = self.history(b)
        self.s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k, "VersionId": v} for k, v, _, _ in entries]})
        self.assertEqual(self.history(b)[1], [])
        self.s3.delete_bucket(Bucket=b)

    def test_delete_objects_with_markers(self):
        b = self.bucket("ver-multi", "Enabled")
        out = self.s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "never"}]})
        self.assertTrue(out["Deleted"][0]["DeleteMarker"])
        marker = out["Deleted"][0]["DeleteMarkerVersionId"]
        _, entries = self.history(b)
        self.assertEqual(entries, [("never", marker, True, "m")])
        out = self.s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "never", "VersionId": marker}]})
        self.assertEqual(out["Deleted"][0]["VersionId"], marker)
        self.assertEqual(self.history(b)[1], [])

    def test_concurrent_writes_and_version_deletes(self):
        b = self.bucket("ver-race", "Enabled")

        def run_all(calls):
            threads = [threading.Thread(target=c) for c in calls]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        for _ in range(3):
            run_all([lambda i=i: self.s3.put_object(Bucket=b, Key="k", Body=str(i).encode()) for i in range(5)])
            _, entries = self.history(b)
            self.assertEqual(len(entries), 5)
            # Each delete of the current version makes the next one current: none may come back.
            run_all([lambda v=v: self.s3.delete_object(Bucket=b, Key="k", VersionId=v) for _, v, _, _ in entries])
            self.assertEqual(self.history(b)[1], [])

    def test_conditional_deletes_on_versions(self):
        b = self.bucket("ver-cond", "Enabled")
        put = self.s3.put_object(Bucket=b, Key="k", Body=b"x")
        version, etag = put["VersionId"], put["ETag"]
        self.assertEqual(self.error(self.s3.delete_object, Bucket=b, Key="k", IfMatch="bad"), (412, "PreconditionFailed"))
        self.assertEqual(
            self.error(self.s3.delete_object, Bucket=b, Key="k", VersionId=version, IfMatchSize=99),
            (412, "PreconditionFailed"),
        )
        out = self.s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "k", "VersionId": version, "ETag": "bad"}]})
        self.assertEqual([e["Code"] for e in out["Errors"]], ["PreconditionFailed"])
        self.assertTrue(self.s3.delete_object(Bucket=b, Key="k", IfMatch=etag)["DeleteMarker"])
        # Behind a delete marker only `*` matches; a key that never existed matches anything.
        self.assertEqual(self.error(self.s3.delete_object, Bucket=b, Key="k", IfMatch=etag), (412, "PreconditionFailed"))
        self.s3.delete_object(Bucket=b, Key="k", IfMatch="*")
        self.s3.delete_object(Bucket=b, Key="never", IfMatch="bad")
        self.s3.delete_object(Bucket=b, Key="k", VersionId=version, IfMatch=etag)
        self.assertEqual(self.error(self.s3.get_object, Bucket=b, Key="k", VersionId=version), (404, "NoSuchVersion"))

    def test_list_versions_pages_with_prefix_and_delimiter(self):
        b = self.bucket("ver-list", "Enabled")
        ids = {}
        for key in ["a", "b/1", "b/2", "c"]:
            ids[key] = [self.s3.put_object(Bucket=b, Key=key, Body=key.encode())["VersionId"] for _ in range(2)]
        r, entries = self.history(b, Delimiter="/")
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["b/"])
        self.assertEqual([e[0] for e in entries], ["a", "a", "c", "c"])
        seen = []
        kw = {}
        while True:
            r, entries = self.history(b, MaxKeys=3, **kw)
            seen += [(k, v) for k, v, _, _ in entries]
            if not r["IsTruncated"]:
                break
            kw = {"KeyMarker": r["NextKeyMarker"], "VersionIdMarker": r["NextVersionIdMarker"]}
        want = [(k, v) for k in ["a", "b/1", "b/2", "c"] for v in reversed(ids[k])]
        self.assertEqual(seen, want)
        r, entries = self.history(b, Prefix="b/", KeyMarker="b/1")
        self.assertEqual([e[0] for e in entries], ["b/2", "b/2"])

    def test_versioning_bad_input(self):
        b = self.bucket("ver-bad", "Enabled")
        self.s3.put_object(Bucket=b, Key="k", Body=b"x")
        cases = [
            (self.s3.put_bucket_versioning, dict(Bucket=b, VersioningConfiguration={"Status": "On"}), (400, "MalformedXML")),
            (self.s3.put_bucket_versioning, dict(Bucket=b, VersioningConfiguration={"MFADelete": "Enabled", "Status": "Enabled"}), (501, "NotImplemented")),
            (self.s3.put_bucket_versioning, dict(Bucket="ver-missing", VersioningConfiguration={"Status": "Enabled"}), (404, "NoSuchBucket")),
            (self.s3.get_bucket_versioning, dict(Bucket="ver-missing"), (404, "NoSuchBucket")),
            (self.s3.get_object, dict(Bucket=b, Key="k", VersionId="00000000-0000-0000-0000-000000000000"), (404, "NoSuchVersion")),
            (self.s3.get_object, dict(Bucket="ver-missing", Key="k", VersionId="null"), (404, "NoSuchBucket")),
            (self.s3.list_object_versions, dict(Bucket=b, VersionIdMarker="null"), (400, "InvalidArgument")),
            (self.s3.delete_object, dict(Bucket=b, Key="k", VersionId="not-a-version"), (404, "NoSuchVersion")),
        ]
        for fn, kw, want in cases:
            with self.subTest(op=fn.__name__, args=kw):
                self.assertEqual(self.error(fn, **kw), want)

    def test_lifecycle_configuration_round_trip_and_validation(self):
        b = self.bucket("lc-conf")
        self.assertEqual(self.error(self.s3.get_bucket_lifecycle_configuration, Bucket=b), (404, "NoSuchLifecycleConfiguration"))
        rules = [
            {"ID": "tmp", "Expiration": {"Days": 3}, "Prefix": "tmp/", "Status": "Enabled"},
            {"ID": "old", "NoncurrentVersionExpiration": {"NoncurrentDays": 5}, "Filter": {"And": {"Prefix": "x/", "Tags": [{"Key": "t", "Value": "1"}, {"Key": "u", "Value": "2"}]}}, "Status": "Disabled"},
            {"ID": "mpu", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}, "Filter": {"Prefix": ""}, "Status": "Enabled"},
        ]
        self.s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": rules})
        self.assertEqual(self.s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"], rules)
        self.s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [{"Expiration": {"Days": 1}, "Prefix": "a/", "Status": "Enabled"}]})
        self.assertTrue(self.s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"][0]["ID"])
        self.assertEqual(self.s3.delete_bucket_lifecycle(Bucket=b)["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.error(self.s3.get_bucket_lifecycle_configuration, Bucket=b), (404, "NoSuchLifecycleConfiguration"))

        def rule(**kw):
            r = {"ID": "r", "Expiration": {"Days": 1}, "Prefix": "p/", "Status": "Enabled"}
            r.update(kw)
            return r

        bad = [
            ([rule(ID="a" * 256)], (400, "InvalidArgument")),
            ([rule(), rule()], (400, "InvalidArgument")),
            ([rule(Status="enabled")], (400, "MalformedXML")),
            ([rule(Expiration={"Days": 0})], (400, "InvalidArgument")),
            ([rule(Expiration={"Date": "2030-01-01T12:00:00Z"})], (400, "InvalidArgument")),
            ([rule(Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True})], (400, "MalformedXML")),
            ([rule(NoncurrentVersionExpiration={"NoncurrentDays": 0})], (400, "InvalidArgument")),
            ([rule(Transitions=[{"Days": 1, "StorageClass": "GLACIER"}])], (400, "InvalidStorageClass")),
            ([{"ID": "none", "Prefix": "p/", "Status": "Enabled"}], (400, "MalformedXML")),
        ]
        for rules, want in bad:
            with self.subTest(rules=rules):
                self.assertEqual(
                    self.error(self.s3.put_bucket_lifecycle_configuration, Bucket=b, LifecycleConfiguration={"Rules": rules}),
                    want,
                )
        self.assertEqual(
            self.error(self.s3.put_bucket_lifecycle_configuration, Bucket="lc-missing", LifecycleConfiguration={"Rules": [rule()]}),
            (404, "NoSuchBucket"),
        )

    def test_lifecycle_expires_temporary_uploads(self):
        b = self.bucket("lc-run")
        for key in ["tmp/a", "tmp/b", "keep/a"]:
            self.s3.put_object(Bucket=b, Key=key, Body=b"x")
        self.s3.put_object(Bucket=b, Key="tagged", Body=b"x", Tagging="kind=scratch")
        self.s3.put_object(Bucket=b, Key="untagged", Body=b"x")
        upload = self.s3.create_multipart_upload(Bucket=b, Key="tmp/big")["UploadId"]
        rules = [
            {"ID": "tmp", "Expiration": {"Days": 1}, "Filter": {"Prefix": "tmp/"}, "Status": "Enabled"},
            {"ID": "scratch", "Expiration": {"Days": 1}, "Filter": {"Tag": {"Key": "kind", "Value": "scratch"}}, "Status": "Enabled"},
            {"ID": "uploads", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}, "Prefix": "tmp/", "Status": "Enabled"},
            {"ID": "off", "Expiration": {"Days": 1}, "Prefix": "keep/", "Status": "Disabled"},
        ]
        self.s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": rules})
        head = self.s3.head_object(Bucket=b, Key="tmp/a")
        self.assertIn('rule-id="tmp"', head["ResponseMetadata"]["HTTPHeaders"]["x-amz-expiration"])

        def keys():
            return sorted(o["Key"] for o in self.s3.list_objects_v2(Bucket=b).get("Contents", []))

        eventually(lambda: keys() == ["keep/a", "untagged"], "tmp/ and tagged objects expire")
        eventually(lambda: not self.s3.list_multipart_uploads(Bucket=b).get("Uploads"), "the upload is aborted")
        self.assertEqual(self.error(self.s3.list_parts, Bucket=b, Key="tmp/big", UploadId=upload), (404, "NoSuchUpload"))

    def test_lifecycle_noncurrent_versions_and_markers(self):
        b = self.bucket("lc-versions", "Enabled")
        old = [self.s3.put_object(Bucket=b, Key="n/doc", Body=f"v{i}".encode())["VersionId"] for i in range(3)]
        self.s3.put_object(Bucket=b, Key="m/gone", Body=b"x")
        self.s3.delete_object(Bucket=b, Key="m/gone")
        rules = [
            {"ID": "noncurrent", "NoncurrentVersionExpiration": {"NoncurrentDays": 1}, "Prefix": "n/", "Status": "Enabled"},
            {"ID": "markers", "NoncurrentVersionExpiration": {"NoncurrentDays": 1}, "Expiration": {"ExpiredObjectDeleteMarker": True}, "Prefix": "m/", "Status": "Enabled"},
        ]
        self.s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": rules})
        eventually(lambda: self.history(b)[1] == [("n/doc", old[2], True, "v")], "noncurrent versions and the lone marker expire")
        self.assertFalse(self.blob_exists(old[0]))

    def test_get_object_attributes(self):
        b = self.bucket("attrs", "Enabled")
        attrs = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
        put = self.s3.put_object(Bucket=b, Key="one", Body=b"foo", ChecksumAlgorithm="SHA256")
        r = self.s3.get_object_attributes(Bucket=b, Key="one", ObjectAttributes=attrs)
        self.assertEqual(r["ETag"], put["ETag"].strip('"'))
        self.assertEqual((r["ObjectSize"], r["StorageClass"], r["VersionId"]), (3, "STANDARD", put["VersionId"]))
        self.assertEqual(r["Checksum"]["ChecksumSHA256"], put["ChecksumSHA256"])
        self.assertNotIn("ObjectParts", r)
        self.s3.put_object(Bucket=b, Key="one", Body=b"longer")
        r = self.s3.get_object_attributes(Bucket=b, Key="one", VersionId=put["VersionId"], ObjectAttributes=["ObjectSize"])
        self.assertEqual(r["ObjectSize"], 3)

        up = self.s3.create_multipart_upload(Bucket=b, Key="multi")["UploadId"]
        parts = []
        for n, size in enumerate([5 * MIB, 5 * MIB, 1], start=1):
            e = self.s3.upload_part(Bucket=b, Key="multi", UploadId=up, PartNumber=n, Body=b"p" * size)["ETag"]
            parts.append({"PartNumber": n, "ETag": e})
        done = self.s3.complete_multipart_upload(Bucket=b, Key="multi", UploadId=up, MultipartUpload={"Parts": parts})
        r = self.s3.get_object_attributes(Bucket=b, Key="multi", ObjectAttributes=attrs, MaxParts=1, PartNumberMarker=1)
        self.assertEqual(r["ETag"], done["ETag"].strip('"'))
        op = r["ObjectParts"]
        self.assertEqual((op["TotalPartsCount"], op["IsTruncated"], op["NextPartNumberMarker"]), (3, True, 2))
        self.assertEqual([(p["PartNumber"], p["Size"]) for p in op["Parts"]], [(2, 5 * MIB)])

        self.s3.delete_object(Bucket=b, Key="one")
        self.assertEqual(self.error(self.s3.get_object_attributes, Bucket=b, Key="one", ObjectAttributes=attrs)[1], "NoSuchKey")
        self.assertEqual(self.error(self.s3.get_object_attributes, Bucket="attrs-missing", Key="one", ObjectAttributes=attrs)[1], "NoSuchBucket")

    # The storage API: a teacher restores a material deleted by mistake; the policies decide.

    def api(self, method, path, token=None, body=None, content_type="application/json"):
        headers = {"apikey": self.doska.anon_key, "Authorization": f"Bearer {token or self.doska.service_key}"}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.doska.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if r.headers.get_content_type() == "application/json" else raw)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def sign_up(self, email):
        status, session = self.api("POST", "/auth/v1/signup", token=self.doska.anon_key, body={"email": email, "password": "versions-pass-1"})
        self.assertEqual(status, 200, session)
        return session["access_token"]

    def test_storage_api_restores_a_deleted_material(self):
        self.assertEqual(self.api("POST", "/storage/v1/bucket", body={"name": "materials"})[0], 200)
        self.assertEqual(self.api("PUT", "/storage/v1/bucket/materials/versioning", body={"status": "Enabled"})[0], 200)
        self.assertEqual(self.api("GET", "/storage/v1/bucket/materials/versioning")[1], {"status": "Enabled"})
        anna, boris = self.sign_up("anna@school.test"), self.sign_up("boris@school.test")
        path = "/storage/v1/object/materials/lesson.txt"
        self.assertEqual(self.api("POST", path, anna, b"draft", "text/plain")[0], 200)
        self.assertEqual(self.api("PUT", path, anna, b"final", "text/plain")[0], 200)
        self.assertEqual(self.api("DELETE", path, anna)[0], 200)
        self.assertEqual(self.api("GET", path, anna)[0], 404)
        status, versions = self.api("GET", "/storage/v1/object/versions/materials/lesson.txt", anna)
        self.assertEqual(status, 200, versions)
        self.assertEqual([(v["delete_marker"], v["is_latest"]) for v in versions], [(True, True), (False, False), (False, False)])
        final = versions[1]["version_id"]

        # Boris sees none of Anna's versions and cannot restore them; nor may he turn versioning off.
        self.assertEqual(self.api("GET", "/storage/v1/object/versions/materials/lesson.txt", boris)[0], 404)
        self.assertEqual(self.api("POST", "/storage/v1/object/restore/materials/lesson.txt", boris, {"versionId": final})[0], 404)
        self.assertEqual(self.api("PUT", "/storage/v1/bucket/materials/versioning", boris, {"status": "Suspended"})[0], 403)

        status, restored = self.api("POST", "/storage/v1/object/restore/materials/lesson.txt", anna, {"versionId": final})
        self.assertEqual(status, 200, restored)
        self.assertEqual(restored["restored_from"], final)
        self.assertEqual(self.api("GET", "/storage/v1/object/authenticated/materials/lesson.txt", anna), (200, b"final"))
        status, versions = self.api("GET", "/storage/v1/object/versions/materials/lesson.txt", anna)
        self.assertEqual(len(versions), 4)
        self.assertEqual(versions[0]["version_id"], restored["version_id"])

        bad = [
            ("POST", "/storage/v1/object/restore/materials/lesson.txt", {}, 400),
            ("POST", "/storage/v1/object/restore/materials/lesson.txt", {"versionId": "00000000-0000-0000-0000-000000000000"}, 404),
            ("POST", "/storage/v1/object/restore/materials/lesson.txt", {"versionId": versions[1]["version_id"]}, 400),
            ("PUT", "/storage/v1/bucket/materials/versioning", {"status": "on"}, 400),
            ("GET", "/storage/v1/object/versions/materials/never.txt", None, 404),
        ]
        for method, p, body, want in bad:
            with self.subTest(method=method, path=p, body=body):
                self.assertEqual(self.api(method, p, anna if "bucket" not in p else None, body)[0], want)


if __name__ == "__main__":
    unittest.main()
