"""The audit log end to end: API writes and refused requests land in
GET /api/v1/audit with the right actor, action, object, outcome and source;
the filters and the JSON lines export work; every entry's hash is
recomputed here in Python from the encoding src/security/audit.h defines
(a third implementation beside the server's and the CLI's); `drover audit
verify` says intact, and after droverd is stopped and one row is edited
with Python's sqlite3 module, it names that row's seq and exits 1.

Entries are written when the reply is sent and become readable once the
store commits them (milliseconds later), so reads of fresh entries poll.
"""

import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import unittest
from urllib.parse import urlencode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import now_ms, rfc3339, uid, wait_for  # noqa: E402

ZERO = "0" * 64


def entry_hash(e):
    """SHA-256 over the version 1 encoding (see src/security/audit.h)."""
    def text(s):
        b = s.encode("utf-8")
        return struct.pack(">I", len(b)) + b
    detail = json.dumps(e["detail"], separators=(",", ":"), sort_keys=True,
                        ensure_ascii=False)
    m = b"drover-audit-v1" + struct.pack(">qq", e["seq"], e["ts"])
    for k in ("actor", "action", "object", "outcome", "source"):
        m += text(e[k])
    m += text(detail) + bytes.fromhex(e["prev_hash"])
    return hashlib.sha256(m).hexdigest()


class AuditBase(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = harness.cli_path()
        cls.cwd = tempfile.mkdtemp(prefix="drover-audit-")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.cwd, ignore_errors=True)

    def cli(self, *args, timeout=60):
        argv = [self.binary, "--server", self.server.base_url, "--token", self.server.token]
        argv += list(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
        env["HOME"] = self.cwd
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=env, cwd=self.cwd)
        except subprocess.TimeoutExpired:
            self.fail("drover timed out: %s" % " ".join(argv))

    def audit(self, **params):
        st, js = self.server.api("GET", "/api/v1/audit?" + urlencode(params))
        self.assertEqual(st, 200, js)
        return js

    def all_entries(self, **params):
        out, params = [], dict(params, limit=1000)
        for _ in range(1000):
            js = self.audit(**params)
            out += js["entries"]
            if js["next"] is None:
                return out
            params["cursor"] = js["next"]
        self.fail("audit pagination did not end")

    def wait_entry(self, pred, msg, **params):
        """The first entry matching pred, polling until it is committed."""
        def find():
            for e in self.all_entries(**params):
                if pred(e):
                    return e
            return None
        return wait_for(find, timeout=5, msg=msg)

    def last_seq(self):
        es = self.all_entries()
        return es[-1]["seq"] if es else 0


class AuditApiTest(AuditBase):

    def test_writes_are_audited(self):
        d = uid("aud")
        secrets = [self.server.create_device(d)]
        st, js = self.server.api("POST", "/api/v1/devices/%s/secret" % d)
        self.assertEqual(st, 200)
        secrets.append(js["secret"])
        st, _ = self.server.api("POST", "/api/v1/devices", {"id": d})
        self.assertEqual(st, 409)
        st, _ = self.server.api("DELETE", "/api/v1/devices/" + d)
        self.assertEqual(st, 204)
        want = [("POST /api/v1/devices", "201"),
                ("POST /api/v1/devices/{id}/secret", "200"),
                ("POST /api/v1/devices", "409"),
                ("DELETE /api/v1/devices/{id}", "204")]
        es = wait_for(lambda: (lambda x: x if len(x) >= 4 else None)(
            self.all_entries(object=d)), timeout=5, msg="4 entries about %s" % d)
        self.assertEqual([(e["action"], e["outcome"]) for e in es], want)
        for e in es:
            self.assertEqual(e["actor"], "token:admin")
            self.assertEqual(e["object"], d)
            self.assertRegex(e["source"], r"^127\.0\.0\.1:\d+$")
            self.assertEqual(e["detail"], {})
            for s in secrets:  # no secret, no request or response body
                self.assertNotIn(s, json.dumps(e))
        self.assertEqual([e["seq"] for e in es], sorted(e["seq"] for e in es))

    def test_reads_are_not_audited(self):
        d = uid("rd")
        self.server.create_device(d)
        self.wait_entry(lambda e: e["object"] == d, "the create of %s" % d)
        before = self.last_seq()
        for path in ("/api/v1/devices", "/api/v1/devices/" + d, "/api/v1/audit",
                     "/api/v1/devices/%s/telemetry" % d, "/healthz", "/metrics"):
            self.assertEqual(self.server.api("GET", path)[0], 200, path)
        self.assertEqual(self.server.request("HEAD", "/api/v1/devices")[0], 200)
        self.assertEqual(self.last_seq(), before)

    def test_mqtt_refusals_are_audited(self):
        """A refused MQTT authentication is a refused authorization too."""
        d = uid("mq")
        self.server.create_device(d)
        c = self.server.mqtt(d, d, "not-the-secret")
        try:
            rc = c.connect()
        finally:
            c.close()
        self.assertEqual(rc, 4, "a wrong secret is refused (3.1.1 code 4)")
        e = self.wait_entry(lambda e: e["action"] == "mqtt.connect" and e["object"] == d,
                            "an audit entry for the refused connect", actor="device:" + d)
        self.assertEqual(e["outcome"], "refused 0x86")
        self.assertRegex(e["source"], r"^127\.0\.0\.1:\d+$")

    def test_refusals_are_audited(self):
        # 401: no token on a read, a malformed one on a write.
        st, _ = self.server.api("GET", "/api/v1/devices", token=None)
        self.assertEqual(st, 401)
        st, _ = self.server.api("POST", "/api/v1/devices", {"id": uid("x")},
                                token="drv_" + "A" * 43)
        self.assertEqual(st, 401)
        es = wait_for(lambda: (lambda x: x if len(x) >= 2 else None)(
            self.all_entries(actor="anonymous")), timeout=5, msg="two anonymous denials")
        got = [(e["action"], e["outcome"]) for e in es[-2:]]
        self.assertEqual(got, [("DENY GET /api/v1/devices", "401"),
                               ("DENY POST /api/v1/devices", "401")])

        # 403: a viewer token writing, and reading the audit log (admin only).
        name = uid("viewer")
        st, js = self.server.api("POST", "/api/v1/tokens",
                                 {"name": name, "role": "viewer", "expires_in_s": 3600})
        self.assertEqual(st, 201, "POST /api/v1/tokens must work to provoke a 403 "
                         "(got %s %r)" % (st, js))
        viewer = js["token"]
        d = uid("v")
        st, _ = self.server.api("POST", "/api/v1/devices", {"id": d}, token=viewer)
        self.assertEqual(st, 403)
        st, _ = self.server.api("GET", "/api/v1/audit", token=viewer)
        self.assertEqual(st, 403)
        st, _ = self.server.api("GET", "/api/v1/devices", token=viewer)
        self.assertEqual(st, 200)
        actor = "token:" + name
        es = wait_for(lambda: (lambda x: x if len(x) >= 2 else None)(
            self.all_entries(actor=actor)), timeout=5, msg="entries by " + actor)
        got = [(e["action"], e["outcome"]) for e in es]  # the allowed read is not there
        self.assertEqual(got, [("DENY POST /api/v1/devices", "403"),
                               ("DENY GET /api/v1/audit", "403")])
        # The token's own creation is on the record, by the admin.
        self.wait_entry(lambda e: e["action"] == "POST /api/v1/tokens" and e["outcome"] == "201"
                        and e["actor"] == "token:admin", "the token's creation")

    def test_user_login_and_actor(self):
        name = uid("op")
        pw = "correct horse battery staple"
        st, js = self.server.api("POST", "/api/v1/users",
                                 {"name": name, "password": pw, "role": "operator"})
        self.assertEqual(st, 201, js)
        st, js = self.server.api("POST", "/api/v1/login", {"name": name, "password": "nope"},
                                 token=None)
        self.assertEqual(st, 401, js)
        login_st, js = self.server.api("POST", "/api/v1/login", {"name": name, "password": pw},
                                       token=None)
        self.assertIn(login_st, (200, 201), js)
        d = uid("usr")
        st, _ = self.server.api("POST", "/api/v1/devices", {"id": d}, token=js["token"])
        self.assertEqual(st, 201)
        e = self.wait_entry(lambda e: e["object"] == d, "the create of " + d)
        self.assertEqual(e["actor"], "user:" + name)  # a login token acts as its user
        es = self.all_entries(since=now_ms() - 60000)
        logins = [(x["action"], x["outcome"]) for x in es if x["action"].endswith("/login")]
        self.assertEqual(len(logins), 2, logins)
        # Both attempts, failed and good, name the user who tried.
        actors = [x["actor"] for x in es if x["action"].endswith("/login")]
        self.assertEqual(actors, ["user:" + name] * 2)
        self.assertEqual(logins[0], ("DENY POST /api/v1/login", "401"))
        self.assertEqual(logins[1][0], "POST /api/v1/login")
        self.assertEqual(logins[1][1], str(login_st))
        self.assertNotIn(pw, json.dumps(es))

    def test_filters_and_paging(self):
        t0 = now_ms()
        ids = [uid("flt") for _ in range(5)]
        for d in ids:
            self.server.create_device(d)
        self.wait_entry(lambda e: e["object"] == ids[-1], "the last create")
        t1 = now_ms() + 1
        mine = [e for e in self.all_entries(since=t0, until=t1) if e["object"] in ids]
        self.assertEqual([e["object"] for e in mine], ids)
        # RFC 3339 works too, and until is exclusive.
        self.assertEqual(len([e for e in self.all_entries(since=rfc3339(t0), until=rfc3339(t1))
                              if e["object"] in ids]), 5)
        first_ts = mine[0]["ts"]
        self.assertNotIn(ids[0], [e["object"] for e in self.all_entries(until=first_ts)])
        self.assertEqual(self.all_entries(since=t1 + 3600 * 1000), [])
        # object and actor filters
        self.assertEqual([e["object"] for e in self.all_entries(object=ids[2])], [ids[2]])
        self.assertTrue(all(e["actor"] == "token:admin"
                            for e in self.all_entries(actor="token:admin")))
        # pages of 2 with cursors cover exactly the same entries
        seen, params = [], {"since": t0, "until": t1, "limit": 2}
        for _ in range(100):
            js = self.audit(**params)
            self.assertLessEqual(len(js["entries"]), 2)
            seen += js["entries"]
            if js["next"] is None:
                break
            self.assertEqual(js["next"], str(js["entries"][-1]["seq"]))
            params["cursor"] = js["next"]
        self.assertEqual([e["seq"] for e in seen],
                         [e["seq"] for e in self.all_entries(since=t0, until=t1)])
        # bad parameters
        for q in ("limit=0", "limit=1001", "since=yesterday", "until=x", "cursor=-1",
                  "format=xml", "actor=", "limit=1&limit=2"):
            st, js = self.server.api("GET", "/api/v1/audit?" + q)
            self.assertEqual(st, 400, q)
            self.assertEqual(js["error"], "bad_request", q)

    def test_jsonl_export(self):
        ids = [uid("exp") for _ in range(3)]
        for d in ids:
            self.server.create_device(d)
        self.wait_entry(lambda e: e["object"] == ids[-1], "the last create")
        st, h, body = self.server.request("GET", "/api/v1/audit?format=jsonl")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("application/x-ndjson"))
        self.assertNotIn("x-next-cursor", h)
        lines = body.decode().splitlines()
        self.assertEqual([json.loads(l) for l in lines], self.all_entries())
        st, h, body = self.server.request("GET", "/api/v1/audit?format=jsonl&limit=2&cursor=1")
        self.assertEqual(st, 200)
        got = [json.loads(l) for l in body.decode().splitlines()]
        self.assertEqual([e["seq"] for e in got], [2, 3])
        self.assertEqual(h.get("x-next-cursor"), "3")

    def test_chain_recomputed_in_python(self):
        self.server.create_device(uid("py"))
        wait_for(lambda: self.last_seq() >= 2, msg="entries")
        es = self.all_entries()
        self.assertEqual(es[0]["seq"], 1)
        self.assertEqual(es[0]["prev_hash"], ZERO)
        self.assertEqual(es[0]["actor"], "system")  # the first admin token
        self.assertEqual(es[0]["action"], "token.bootstrap")
        prev = ZERO
        for i, e in enumerate(es):
            self.assertEqual(e["seq"], i + 1)
            self.assertEqual(e["prev_hash"], prev, e)
            self.assertEqual(entry_hash(e), e["hash"], e)
            prev = e["hash"]

    def test_cli_list_export_verify(self):
        d = uid("cli")
        self.server.create_device(d)
        self.wait_entry(lambda e: e["object"] == d, "the create of " + d)
        r = self.cli("audit", "list", "--object", d)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("POST /api/v1/devices", r.stdout)
        self.assertIn("token:admin", r.stdout)
        r = self.cli("audit", "list", "--all", "--limit", "2", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertIsNone(doc["next"])
        self.assertEqual([e["seq"] for e in doc["entries"]],
                         list(range(1, len(doc["entries"]) + 1)))
        r = self.cli("audit", "list", "--since", "-1h", "--actor", "token:admin", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(all(e["actor"] == "token:admin" for e in json.loads(r.stdout)["entries"]))

        r = self.cli("audit", "verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"^audit chain intact: \d+ entries\n")

        r = self.cli("audit", "export")
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(self.cwd, "audit.jsonl")
        with open(path, "w") as f:
            f.write(r.stdout)
        n = len(r.stdout.splitlines())
        r = self.cli("audit", "verify", "--file", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("audit chain intact: %d entries" % n, r.stdout)
        # An edited export is caught by the CLI alone.
        lines = open(path).read().splitlines()
        e = json.loads(lines[1])
        e["actor"] = "token:someone-else"
        lines[1] = json.dumps(e)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = self.cli("audit", "verify", "--file", path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("audit chain broken at seq %d: hash mismatch" % e["seq"], r.stdout)


class AuditTamperTest(AuditBase):
    """Restart continues the chain; an edited or deleted row is found."""

    def db(self):
        return sqlite3.connect(os.path.join(self.server.data_dir, "drover.db"))

    def verify(self):
        r = self.cli("audit", "verify")
        return r.returncode, r.stdout + r.stderr

    def test_tamper_detected(self):
        d1 = uid("t")
        self.server.create_device(d1)
        self.wait_entry(lambda e: e["object"] == d1, "the create of " + d1)
        self.server.restart()
        d2 = uid("t")
        self.server.create_device(d2)
        self.assertEqual(self.server.api("DELETE", "/api/v1/devices/" + d1)[0], 204)
        self.wait_entry(lambda e: e["object"] == d1 and e["action"].startswith("DELETE"),
                        "the delete of " + d1)
        rc, out = self.verify()
        self.assertEqual(rc, 0, out)
        es = self.all_entries()
        self.assertEqual([e["seq"] for e in es], list(range(1, len(es) + 1)))
        victim = [e for e in es if e["object"] == d2][0]

        # Edit one row's outcome behind the server's back.
        self.server.stop()
        with self.db() as db:
            n = db.execute("UPDATE audit SET outcome = '500' WHERE seq = ?",
                           (victim["seq"],)).rowcount
        db.close()
        self.assertEqual(n, 1)
        self.server.start()
        rc, out = self.verify()
        self.assertEqual(rc, 1, out)
        self.assertIn("audit chain broken at seq %d: hash mismatch" % victim["seq"], out)
        js = self.audit(object=d2)
        self.assertEqual(js["entries"][0]["outcome"], "500")  # shown as stored

        # Put it back: intact again. Then delete a row: a gap.
        self.server.stop()
        with self.db() as db:
            db.execute("UPDATE audit SET outcome = ? WHERE seq = ?",
                       (victim["outcome"], victim["seq"]))
        db.close()
        self.server.start()
        rc, out = self.verify()
        self.assertEqual(rc, 0, out)
        self.server.stop()
        with self.db() as db:
            db.execute("DELETE FROM audit WHERE seq = ?", (victim["seq"],))
        db.close()
        self.server.start()
        rc, out = self.verify()
        self.assertEqual(rc, 1, out)
        self.assertIn("audit chain broken at seq %d: gap in seq (expected %d)"
                      % (victim["seq"] + 1, victim["seq"]), out)


if __name__ == "__main__":
    unittest.main()
