"""Bucket tagging (Put/Get/DeleteBucketTagging) with boto3 against a live doska binary: a round trip
(tags kept on the bucket's row, replaced whole, deleted), NoSuchTagSet for a bucket never tagged or
whose tags were deleted, a table of bad inputs refused with S3's codes and nothing stored, the
storage policies deciding who may tag (an unsigned request to a public bucket acts as `anon`), and
object tags still held to their own, smaller limit. Run: python -m unittest discover server/tests/py
(DOSKA_BIN picks the binary).
"""

import unittest

from s3_case import S3Case

KEY = "DOSKAPYTAGGINGKEY"
SECRET = "doska-py-tagging-secret-key"


def tag_set(pairs):
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs]}


class S3BucketTagging(S3Case):
    KEY, SECRET = KEY, SECRET
    # boto3 would refuse an empty tag key itself: doska's answer is what is tested.
    VALIDATE = False

    def tags(self, bucket):
        return [(t["Key"], t["Value"]) for t in self.s3.get_bucket_tagging(Bucket=bucket)["TagSet"]]

    def test_round_trip(self):
        b = "tagged-materials"
        self.s3.create_bucket(Bucket=b)
        self.assertEqual(self.error(self.s3.get_bucket_tagging, Bucket=b), (404, "NoSuchTagSet"))

        self.s3.put_bucket_tagging(Bucket=b, Tagging=tag_set([("school", "No 5"), ("term", "autumn")]))
        self.assertEqual(self.tags(b), [("school", "No 5"), ("term", "autumn")])
        # A Put replaces the whole set; an empty value is a value.
        self.s3.put_bucket_tagging(Bucket=b, Tagging=tag_set([("archived", "")]))
        self.assertEqual(self.tags(b), [("archived", "")])
        # The limits: 50 tags, keys of 128 characters, values of 256 (characters, not bytes).
        full = [(f"k{n:02}", "з" * 256) for n in range(49)] + [("ключ" * 32, "v")]
        self.s3.put_bucket_tagging(Bucket=b, Tagging=tag_set(full))
        self.assertEqual(sorted(self.tags(b)), sorted(full))
        # The bucket's tags are not its objects' tags, nor the other way round.
        self.s3.put_object(Bucket=b, Key="plan.txt", Body=b"plan", Tagging="kind=plan")
        self.assertEqual(self.s3.get_object_tagging(Bucket=b, Key="plan.txt")["TagSet"], [{"Key": "kind", "Value": "plan"}])
        self.assertEqual(len(self.tags(b)), 50)

        r = self.s3.delete_bucket_tagging(Bucket=b)
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.error(self.s3.get_bucket_tagging, Bucket=b), (404, "NoSuchTagSet"))
        # Deleting tags that are not there succeeds, as in S3.
        self.s3.delete_bucket_tagging(Bucket=b)
        # A deleted and recreated bucket starts untagged.
        self.s3.put_bucket_tagging(Bucket=b, Tagging=tag_set([("term", "spring")]))
        self.s3.delete_object(Bucket=b, Key="plan.txt")
        self.s3.delete_bucket(Bucket=b)
        self.s3.create_bucket(Bucket=b)
        self.assertEqual(self.error(self.s3.get_bucket_tagging, Bucket=b), (404, "NoSuchTagSet"))

    def test_bad_input_is_refused_and_nothing_is_stored(self):
        b = "tag-refusals"
        self.s3.create_bucket(Bucket=b)
        self.s3.put_bucket_tagging(Bucket=b, Tagging=tag_set([("keep", "me")]))
        bad = [
            ("too many tags", b, [(f"k{n}", "v") for n in range(51)], (400, "InvalidTag")),
            ("key too long", b, [("k" * 129, "v")], (400, "InvalidTag")),
            ("value too long", b, [("k", "v" * 257)], (400, "InvalidTag")),
            ("empty key", b, [("", "v")], (400, "InvalidTag")),
            ("duplicate key", b, [("k", "1"), ("k", "2")], (400, "InvalidTag")),
            ("missing bucket", "no-such-bucket", [("k", "v")], (404, "NoSuchBucket")),
        ]
        for why, bucket, pairs, want in bad:
            with self.subTest(why):
                self.assertEqual(self.error(self.s3.put_bucket_tagging, Bucket=bucket, Tagging=tag_set(pairs)), want)
                self.assertEqual(self.tags(b), [("keep", "me")])
        self.assertEqual(self.error(self.s3.get_bucket_tagging, Bucket="no-such-bucket"), (404, "NoSuchBucket"))
        self.assertEqual(self.error(self.s3.delete_bucket_tagging, Bucket="no-such-bucket"), (404, "NoSuchBucket"))
        # Object tags keep their own limit of 10.
        self.s3.put_object(Bucket=b, Key="o", Body=b"o")
        eleven = tag_set([(f"k{n}", "v") for n in range(11)])
        self.assertEqual(self.error(self.s3.put_object_tagging, Bucket=b, Key="o", Tagging=eleven), (400, "InvalidTag"))

    def test_the_policies_decide_who_tags(self):
        # Unsigned requests to a public bucket act as `anon`: no policy lets anon change a bucket.
        b = "public-handouts"
        self.s3.create_bucket(Bucket=b, ACL="public-read")
        self.s3.put_bucket_tagging(Bucket=b, Tagging=tag_set([("owner", "school")]))
        # No policy lets anon see storage.buckets' rows either: to anon the bucket's settings are
        # not there (as for its CORS rules and public access block).
        hidden = (404, "NoSuchBucket")
        self.assertEqual(self.error(self.anonymous.put_bucket_tagging, Bucket=b, Tagging=tag_set([("owner", "me")])), hidden)
        self.assertEqual(self.error(self.anonymous.delete_bucket_tagging, Bucket=b), hidden)
        self.assertEqual(self.error(self.anonymous.get_bucket_tagging, Bucket=b), hidden)
        self.assertEqual(self.tags(b), [("owner", "school")])
        # A private bucket's tags are not for unsigned requests at all.
        self.s3.create_bucket(Bucket="private-notes")
        self.assertEqual(self.error(self.anonymous.get_bucket_tagging, Bucket="private-notes"), (403, "AccessDenied"))


if __name__ == "__main__":
    unittest.main()
