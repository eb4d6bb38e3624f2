"""Zero-touch provisioning (enrollment groups, claim tokens, POST
/api/v1/provision over HTTPS) and bulk import (POST /api/v1/devices:import,
CSV and JSON lines), against the real droverd with its TLS listeners on.

Keys and CSRs come from the openssl command line; the helpers (Pki,
TlsServerTestCase, ...) live in test_tls.py.
"""

import base64
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_tls as tls  # noqa: E402  (module import: its tests are not collected here)
from harness import uid  # noqa: E402

RC5_NOT_AUTHORIZED = 0x87
ADMIN = harness.ADMIN


def secret_ok(s):
    """43 characters of URL-safe base64: 256 random bits."""
    if not isinstance(s, str) or len(s) != 43 or not re.fullmatch(r"[A-Za-z0-9_-]{43}", s):
        return False
    return len(base64.urlsafe_b64decode(s + "=")) == 32


class ProvisionTest(tls.TlsServerTestCase):

    def enroll(self, max_uses=5, **spec):
        body = {"name": uid("line"), "max_uses": max_uses}
        body.update(spec)
        st, js = self.server.api("POST", "/api/v1/enrollments", body)
        self.assertEqual(st, 201, js)
        return js

    def enrollment(self, eid):
        st, js = self.server.api("GET", "/api/v1/enrollments/" + eid)
        self.assertEqual(st, 200, js)
        return js

    def provision(self, token, device_id, cn=None, csr=None):
        """POST /api/v1/provision over HTTPS, no bearer token. Returns
        (status, answer, key path)."""
        key = None
        if csr is None:
            key, csr = self.pki.key_csr(cn or device_id)
        st, js = self.https("POST", "/api/v1/provision",
                            {"claim_token": token, "id": device_id, "csr": csr}, token=None)
        return st, js, key

    def exists(self, device_id):
        st, _ = self.server.api("GET", "/api/v1/devices/" + device_id)
        self.assertIn(st, (200, 404))
        return st == 200

    # -- enrollment groups ------------------------------------------------

    def test_zero_touch_provisioning(self):
        e = self.enroll(tags={"site": "lyon", "floor": "2"}, group="sensors",
                        desired={"interval": 30, "mode": "eco"})
        self.assertTrue(e["id"].startswith("enr_"), e)
        self.assertTrue(e["claim_token"].startswith("drc_"), e)
        self.assertEqual((e["uses"], e["max_uses"], e["state"]), (0, 5, "active"))
        self.assertEqual(e["tags"], {"site": "lyon", "floor": "2"})
        self.assertEqual(e["group"], "sensors")
        self.assertIsNone(e["expires_at"])
        # The claim token is shown once.
        got = self.enrollment(e["id"])
        self.assertNotIn("claim_token", got)
        self.assertNotIn(e["claim_token"], json.dumps(got))
        st, lst = self.server.api("GET", "/api/v1/enrollments")
        self.assertEqual(st, 200, lst)
        self.assertIn(e["id"], [x["id"] for x in lst["enrollments"]])
        self.assertNotIn(e["claim_token"], json.dumps(lst))

        d = uid("zt")
        st, js, key = self.provision(e["claim_token"], d)
        self.assertEqual(st, 201, js)
        self.assertEqual(set(js), {"id", "certificate", "ca_certificate", "serial", "not_after"})
        self.assertEqual(js["id"], d)
        self.assertNotIn("PRIVATE KEY", json.dumps(js))
        crt = self.pki.write(js["certificate"])
        ok, out = tls.Pki.verify(self.ca_file, crt)
        self.assertTrue(ok, out)
        self.assertEqual(tls.Pki.subject(crt), "CN=" + d)
        self.assertEqual(tls.Pki.serial(crt), js["serial"])
        with open(self.ca_file) as f:
            self.assertEqual(js["ca_certificate"].strip(), f.read().strip())

        # Registered with the enrollment's tags, its group and desired state.
        dev = self.server.device(d)
        self.assertEqual(dev["tags"], {"site": "lyon", "floor": "2", "group": "sensors"})
        st, twin = self.server.api("GET", "/api/v1/devices/%s/twin" % d)
        self.assertEqual(st, 200, twin)
        self.assertEqual(twin["desired"], {"interval": 30, "mode": "eco"})
        st, certs = self.server.api("GET", "/api/v1/devices/%s/certificates" % d)
        self.assertEqual([c["serial"] for c in certs["certificates"]], [js["serial"]])
        self.assertEqual(self.enrollment(e["id"])["uses"], 1)

        # It connects with mutual TLS and gets its desired state.
        c = self.tls_client(d, cert=crt, key=key, version=5)
        self.assertEqual(c.connect(), 0)
        c.subscribe("devices/%s/twin/desired" % d)
        m = c.wait_message("devices/%s/twin/desired" % d, timeout=5)
        self.assertIsNotNone(m, "no desired state after SUBSCRIBE")
        self.assertEqual(json.loads(m.payload)["state"], {"interval": 30, "mode": "eco"})
        self.assertTrue(c.publish("devices/%s/telemetry" % d, {"temp": 19.5}))
        c.disconnect()
        self.assertEqual(self.server.device(d)["telemetry"]["temp"]["value"], 19.5)
        # The device has no password anyone knows.
        self.assertEqual(self.tls_connack(d, username=d, password="", version=5), 0x86)

    def test_max_uses(self):
        e = self.enroll(max_uses=2)
        ids = [uid("mu") for _ in range(3)]
        for d in ids[:2]:
            st, js, _ = self.provision(e["claim_token"], d)
            self.assertEqual(st, 201, js)
        st, js, _ = self.provision(e["claim_token"], ids[2])
        self.assertError(st, js, 403, "forbidden")
        self.assertIn("used up", js["detail"])
        self.assertFalse(self.exists(ids[2]))
        got = self.enrollment(e["id"])
        self.assertEqual((got["uses"], got["state"]), (2, "used_up"))

    def test_revoked_enrollment(self):
        e = self.enroll()
        d = uid("rv")
        self.assertEqual(self.provision(e["claim_token"], d)[0], 201)
        st, js = self.server.api("POST", "/api/v1/enrollments/%s/revoke" % e["id"])
        self.assertEqual(st, 200, js)
        self.assertEqual(js, {"id": e["id"], "revoked": True})
        d2 = uid("rv")
        st, js, _ = self.provision(e["claim_token"], d2)
        self.assertError(st, js, 403, "forbidden")
        self.assertIn("revoked", js["detail"])
        self.assertFalse(self.exists(d2))
        got = self.enrollment(e["id"])
        self.assertEqual((got["uses"], got["state"]), (1, "revoked"))
        # Devices it provisioned earlier are not affected.
        self.assertTrue(self.exists(d))
        st, js = self.server.api("POST", "/api/v1/enrollments/enr_%s/revoke" % ("0" * 24))
        self.assertError(st, js, 404, "not_found")

    def test_unknown_token(self):
        e = self.enroll()
        for token in ("drc_" + "A" * 43, e["claim_token"][:-1] + "x", "nope", "", None):
            d = uid("unk")
            st, js, _ = self.provision(token, d)
            self.assertError(st, js, 401, "unauthorized")
            self.assertFalse(self.exists(d))
        self.assertEqual(self.enrollment(e["id"])["uses"], 0)

    def test_existing_id(self):
        e = self.enroll()
        d, secret = self.new_device("exists")
        st, js, _ = self.provision(e["claim_token"], d)
        self.assertError(st, js, 409, "conflict")
        self.assertEqual(self.enrollment(e["id"])["uses"], 0, "a refused claim used the token")
        # The existing device is untouched: its secret still works, no certificate.
        c = self.device_client(d, secret)
        self.assertEqual(c.connect(), 0)
        c.disconnect()
        st, certs = self.server.api("GET", "/api/v1/devices/%s/certificates" % d)
        self.assertEqual(certs["certificates"], [])

    def test_bad_csr_costs_no_use(self):
        e = self.enroll(max_uses=1)
        d = uid("csr")
        key = self.pki.key()
        bad = [
            ("CN is another id", self.pki.csr(key, d + "-other")),
            ("not a CSR", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                          "-----END CERTIFICATE REQUEST-----\n"),
            ("garbage", "hello"),
        ]
        for what, csr in bad:
            st, js, _ = self.provision(e["claim_token"], d, csr=csr)
            self.assertError(st, js, 400, "bad_request")
            self.assertFalse(self.exists(d), what)
            self.assertEqual(self.enrollment(e["id"])["uses"], 0, what)
        st, js = self.https("POST", "/api/v1/provision",
                            {"claim_token": e["claim_token"], "id": d}, token=None)
        self.assertError(st, js, 400, "bad_request")
        st, js, _ = self.provision(e["claim_token"], "bad id!", cn="bad")
        self.assertError(st, js, 400, "bad_request")
        self.assertEqual(self.enrollment(e["id"])["uses"], 0)
        # The use is still there for a good request.
        st, js, _ = self.provision(e["claim_token"], d, csr=self.pki.csr(key, d))
        self.assertEqual(st, 201, js)
        self.assertEqual(self.enrollment(e["id"])["state"], "used_up")

    def test_enrollment_validation_and_roles(self):
        for body in ({"max_uses": 1}, {"name": "x"}, {"name": "x", "max_uses": 0},
                     {"name": "x", "max_uses": 1, "expires_in_s": 59},
                     {"name": "x", "max_uses": 1, "group": "no spaces"},
                     {"name": "x", "max_uses": 1, "tags": {"a": [1]}},
                     {"name": "x", "max_uses": 1, "desired": [1]}):
            st, js = self.server.api("POST", "/api/v1/enrollments", body)
            self.assertError(st, js, 400, "bad_request")
        e = self.enroll(expires_in_s=60)
        self.assertEqual(e["expires_at"] - e["created_at"], 60000)
        self.assertEqual(e["state"], "active")
        st, _ = self.server.api("POST", "/api/v1/enrollments", {"name": "x", "max_uses": 1},
                                token=None)
        self.assertEqual(st, 401)

    def test_enrollment_roles(self):
        e = self.enroll()
        st, js = self.server.api("POST", "/api/v1/tokens",
                                 {"name": uid("op"), "role": "operator", "expires_in_s": 3600})
        if st in (404, 405, 501):
            self.skipTest("POST /api/v1/tokens is not implemented yet (%d): no operator "
                          "token to show that enrollments are admin-only" % st)
        self.assertEqual(st, 201, js)
        op = js["token"]
        st, js = self.server.api("POST", "/api/v1/enrollments", {"name": "x", "max_uses": 1},
                                 token=op)
        self.assertError(st, js, 403, "forbidden")
        st, js = self.server.api("POST", "/api/v1/enrollments/%s/revoke" % e["id"], token=op)
        self.assertError(st, js, 403, "forbidden")
        self.assertEqual(self.server.api("GET", "/api/v1/enrollments/" + e["id"],
                                         token=op)[0], 200)


class ImportTest(tls.TlsServerTestCase):

    def do_import(self, text, content_type):
        st, _, body = self.server.request("POST", "/api/v1/devices:import", text,
                                          headers={"Content-Type": content_type},
                                          timeout=60)
        try:
            return st, json.loads(body)
        except ValueError:
            return st, body

    def csv(self, ids, bad_row=None, bad_id="bad id!"):
        lines = ["id,site,floor"]
        for i, d in enumerate(ids, start=1):
            lines.append("%s,%s,%d" % (bad_id if i == bad_row else d, "site-%d" % (i % 7),
                                       i % 5))
        return "\n".join(lines) + "\n"

    def exists(self, device_id):
        st, _ = self.server.api("GET", "/api/v1/devices/" + device_id)
        return st == 200

    def test_csv_import_of_1000(self):
        tag = uid("imp")
        ids = ["%s-%04d" % (tag, i) for i in range(1, 1001)]
        st, js = self.do_import(self.csv(ids), "text/csv")
        self.assertEqual(st, 201, js)
        self.assertEqual(js["count"], 1000)
        self.assertEqual([x["id"] for x in js["devices"]], ids)
        secrets_ = [x["secret"] for x in js["devices"]]
        self.assertTrue(all(secret_ok(s) for s in secrets_))
        self.assertEqual(len(set(secrets_)), 1000)
        for i in (1, 500, 1000):
            dev = self.server.device(ids[i - 1])
            self.assertEqual(dev["tags"], {"site": "site-%d" % (i % 7), "floor": str(i % 5)})
        # The secrets work for MQTT, on both listeners.
        for i in (0, 1, 499, 998, 999):
            d, s = ids[i], secrets_[i]
            c = self.device_client(d, s, version=4 if i % 2 else 5)
            self.assertEqual(c.connect(), 0, d)
            self.assertTrue(c.publish("devices/%s/telemetry" % d, {"i": i}))
            c.disconnect()
            self.assertEqual(self.server.device(d)["telemetry"]["i"]["value"], i)
        self.assertEqual(self.tls_connack(ids[42], username=ids[42], password=secrets_[42],
                                          version=5), 0)
        self.assertEqual(self.tls_connack(ids[42], username=ids[42], password=secrets_[43],
                                          version=5), 0x86)
        # Shown once: never again in the API.
        st, body = self.server.api("GET", "/api/v1/devices/" + ids[0])
        self.assertNotIn(secrets_[0], json.dumps(body))

    def test_csv_bad_row_imports_nothing(self):
        tag = uid("impbad")
        ids = ["%s-%04d" % (tag, i) for i in range(1, 1001)]
        st, js = self.do_import(self.csv(ids, bad_row=500), "text/csv")
        self.assertError(st, js, 400, "bad_request")
        self.assertIn("line 501", js["detail"])
        for i in (1, 499, 500, 501, 1000):
            self.assertFalse(self.exists(ids[i - 1]), ids[i - 1])
        # A row with the wrong number of fields, too.
        text = "id,site\n%s,a\n%s,b,extra\n" % (ids[0], ids[1])
        st, js = self.do_import(text, "text/csv")
        self.assertError(st, js, 400, "bad_request")
        self.assertIn("line 3", js["detail"])
        self.assertFalse(self.exists(ids[0]))
        st, js = self.do_import("site,floor\na,1\n", "text/csv")
        self.assertError(st, js, 400, "bad_request")

    def test_json_lines_import(self):
        tag = uid("ndj")
        ids = ["%s-%03d" % (tag, i) for i in range(50)]
        text = "\n".join(json.dumps({"id": d, "tags": {"batch": tag, "n": str(i)}})
                         for i, d in enumerate(ids)) + "\n"
        st, js = self.do_import(text, "application/x-ndjson")
        self.assertEqual(st, 201, js)
        self.assertEqual((js["count"], [x["id"] for x in js["devices"]]), (50, ids))
        self.assertEqual(self.server.device(ids[7])["tags"], {"batch": tag, "n": "7"})
        c = self.device_client(ids[7], js["devices"][7]["secret"])
        self.assertEqual(c.connect(), 0)
        c.disconnect()
        # A bad line names itself; nothing of that import exists.
        more = ["%s-x%02d" % (tag, i) for i in range(5)]
        lines = [json.dumps({"id": d}) for d in more]
        lines[2] = '{"id": "%s", "tags": ' % more[2]
        st, js = self.do_import("\n".join(lines), "application/x-ndjson")
        self.assertError(st, js, 400, "bad_request")
        self.assertIn("line 3", js["detail"])
        self.assertFalse(any(self.exists(d) for d in more))

    def test_duplicates_and_existing_ids(self):
        tag = uid("dup")
        ids = ["%s-%d" % (tag, i) for i in range(10)]
        text = "id,site\n" + "".join("%s,s\n" % d for d in ids + [ids[3]])
        st, js = self.do_import(text, "text/csv")
        self.assertError(st, js, 400, "bad_request")
        self.assertIn("line 12", js["detail"])
        self.assertIn("twice", js["detail"])
        self.assertFalse(any(self.exists(d) for d in ids))
        lines = [json.dumps({"id": d}) for d in ids[:3] + ids[:1]]
        st, js = self.do_import("\n".join(lines), "application/x-ndjson")
        self.assertError(st, js, 400, "bad_request")
        self.assertIn("line 4", js["detail"])
        self.assertFalse(any(self.exists(d) for d in ids))
        existing, _ = self.new_device("dupexists")
        text = "id\n%s\n%s\n" % (ids[0], existing)
        st, js = self.do_import(text, "text/csv")
        self.assertError(st, js, 400, "bad_request")
        self.assertIn("exists", js["detail"])
        self.assertFalse(self.exists(ids[0]))
        st, js = self.do_import("id\n" + ids[0], "text/plain")
        self.assertError(st, js, 415, "unsupported_media_type")


if __name__ == "__main__":
    harness.main()
