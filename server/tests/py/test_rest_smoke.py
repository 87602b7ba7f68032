"""Smoke test of the REST door with the official Python client (`supabase`, its `postgrest`):
select with filters, an embed, insert, upsert, update, delete and rpc against a live doska binary
started with the REST fixture (tests/rest_fixture/fixture.sql). Run: python -m unittest discover
server/tests/py (DOSKA_BIN picks the binary, default target/debug/doska)."""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest
from pathlib import Path

from supabase import create_client

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
BIN = os.environ.get("DOSKA_BIN", str(REPO / "target" / "debug" / "doska"))


class Doska:
    """The doska binary on a random port with its own data dir, the fixture as its migration."""

    def __init__(self, serve_args=(), extra_migrations=()):
        self.root = Path(tempfile.mkdtemp(prefix="doska-py-"))
        # mkdtemp makes it 0700; the `postgres` user (doska runs PostgreSQL as it under root) must
        # pass through, or the cluster is relocated outside the folder and outlives the test.
        os.chmod(self.root, 0o755)
        migrations = self.root / "migrations"
        policies = self.root / "policies"
        migrations.mkdir()
        policies.mkdir()
        shutil.copy(HERE.parent / "rest_fixture" / "fixture.sql", migrations / "0001_rest_fixture.sql")
        # More migrations a test needs, as (file name, SQL), applied after the fixture.
        for name, sql in extra_migrations:
            (migrations / name).write_text(sql)
        self.args = ["--data-dir", str(self.root / "data"), "--migrations", str(migrations), "--policies", str(policies)]
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--log-format", "json", *serve_args, *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = None
        self.s3_url = None  # with --s3-listen: logged before the main listener's url
        self.log = []
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    fields = {}
                url = fields.get("url")
                self.s3_url = self.s3_url or fields.get("s3_url")
                if url and not self.url:
                    self.url = url
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or not self.url:
            self.stop()
            raise RuntimeError("doska did not start:\n" + "".join(self.log))
        keys = json.loads(subprocess.check_output([BIN, "keys", *self.args], text=True))
        self.anon_key = keys["anon_key"]
        self.service_key = keys["service_role_key"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


class RestSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doska = Doska()
        cls.anon = create_client(cls.doska.url, cls.doska.anon_key)
        cls.service = create_client(cls.doska.url, cls.doska.service_key)

    @classmethod
    def tearDownClass(cls):
        cls.doska.stop()

    def test_select_with_filters_and_order(self):
        res = self.anon.table("films").select("id, title").gte("year", 1960).lt("year", 1985).order("year", desc=True).execute()
        self.assertEqual(res.data, [{"id": 2, "title": "The Shining"}, {"id": 1, "title": "2001"}])
        res = self.anon.table("films").select("id").in_("title", ["Ran", "Ikiru"]).order("id").execute()
        self.assertEqual(res.data, [{"id": 3}, {"id": 4}])
        res = self.anon.table("films").select("id", count="exact").limit(1).execute()
        self.assertEqual(res.count, 5)

    def test_embed(self):
        res = self.anon.table("directors").select("name, films(title)").eq("id", 2).order("year", foreign_table="films").execute()
        self.assertEqual(res.data, [{"name": "Kurosawa", "films": [{"title": "Ikiru"}, {"title": "Ran"}]}])

    def test_writes(self):
        ins = self.service.table("actors").insert({"name": "Py"}).execute()
        self.assertEqual(ins.data[0]["name"], "Py")
        up = self.service.table("directors").upsert({"id": 3, "name": "Upserted"}).execute()
        self.assertEqual(up.data, [{"id": 3, "name": "Upserted"}])
        upd = self.service.table("actors").update({"name": "Py2"}).eq("id", ins.data[0]["id"]).execute()
        self.assertEqual(upd.data[0]["name"], "Py2")
        gone = self.service.table("actors").delete().eq("id", ins.data[0]["id"]).execute()
        self.assertEqual(gone.data[0]["name"], "Py2")

    def test_rpc(self):
        self.assertEqual(self.anon.rpc("add", {"a": 1, "b": 2}).execute().data, 3)
        rows = self.anon.rpc("films_by_year", {"y": 1980}).select("title").execute()
        self.assertEqual(rows.data, [{"title": "The Shining"}, {"title": "Ran"}])

    def test_error_shape(self):
        from postgrest.exceptions import APIError

        with self.assertRaises(APIError) as ctx:
            self.anon.table("nope").select("*").execute()
        self.assertEqual(ctx.exception.code, "PGRST205")


if __name__ == "__main__":
    unittest.main()
