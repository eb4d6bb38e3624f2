"""The drover CLI's PKI commands against a live droverd with its HTTPS
listener on: enrollment groups (enroll create/list/show/revoke),
zero-touch provisioning (drover provision, no API token), device
certificates (cert issue/list/revoke), the fleet CA (drover ca), bulk
import (device import, CSV and JSON lines) and device revocation.

Every CLI call goes to the https:// listener and verifies droverd's
certificate against the fleet CA (<data dir>/ca.crt) given with --cacert
or DROVER_CACERT. Keys and CSRs come from the openssl command line;
certificates are checked with `openssl x509` and `openssl verify`.

Run by hand:
  DROVER_BUILD_DIR=<build dir> /usr/bin/python3 tests/integration/test_cli_pki.py
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HOST, uid  # noqa: E402

PEM_CERT = re.compile(r"\A-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+"
                      r"-----END CERTIFICATE-----\n\Z")
SECRET = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")


class CliPkiTest(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        harness.require_tool("openssl")
        cls.binary = harness.cli_path()
        cls.cwd = tempfile.mkdtemp(prefix="drover-clipki-")
        # One droverd with --https-listen; the three ports are picked
        # together so that they differ, and again if one was taken meanwhile.
        for attempt in range(3):
            mqtt, http_, https = harness.free_ports(3)
            srv = harness.Droverd(extra_args=["--https-listen", "%s:%d" % (HOST, https)],
                                  mqtt_port=mqtt, http_port=http_)
            try:
                srv.start()
            except AssertionError:
                clash = srv.stderr_path and "in use" in srv.stderr().lower()
                srv.cleanup()
                if clash and attempt < 2:
                    continue
                shutil.rmtree(cls.cwd, ignore_errors=True)
                raise
            break
        cls.server = srv
        cls.https_url = "https://%s:%d" % (HOST, https)
        cls.ca_file = os.path.join(srv.data_dir, "ca.crt")

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.cwd, ignore_errors=True)

    # -- running the CLI and openssl ---------------------------------------

    def cli(self, *args, token=True, cacert=True, env=None, input=None, timeout=40):
        """drover against the HTTPS listener. token: send the admin token;
        cacert: True for --cacert <fleet CA>, "env" for DROVER_CACERT, False
        for none."""
        argv = [self.binary, "--server", self.https_url]
        if token:
            argv += ["--token", self.server.token]
        if cacert is True:
            argv += ["--cacert", self.ca_file]
        argv += list(args)
        e = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
        e["HOME"] = self.cwd  # no config file from the real home
        if cacert == "env":
            e["DROVER_CACERT"] = self.ca_file
        e.update(env or {})
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=e, cwd=self.cwd, input=input)
        except subprocess.TimeoutExpired as ex:
            self.fail("drover timed out after %ss: %s\nstdout: %s\nstderr: %s"
                      % (timeout, " ".join(args), ex.stdout, ex.stderr))

    def expect(self, rc, *args, **kw):
        r = self.cli(*args, **kw)
        self.assertEqual(r.returncode, rc, "drover %s: rc %d, want %d\nstdout: %s\nstderr: %s"
                         % (" ".join(args), r.returncode, rc, r.stdout, r.stderr))
        return r

    def ok(self, *args, **kw):
        return self.expect(0, *args, **kw)

    def js(self, *args, rc=0, **kw):
        r = self.expect(rc, *args, "--json", **kw)
        try:
            return json.loads(r.stdout)
        except ValueError:
            self.fail("drover %s --json printed no JSON:\n%s\nstderr: %s"
                      % (" ".join(args), r.stdout, r.stderr))

    def path(self, name):
        return os.path.join(self.cwd, name)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def openssl(self, *args, input=None):
        r = harness.run(["openssl"] + list(args), timeout=30, input=input)
        self.assertEqual(r.returncode, 0, "openssl %s: %s" % (" ".join(args), r.stderr))
        return r.stdout

    def key_csr(self, cn, text=False):
        """A new P-256 key and a CSR with CN = cn; returns the CSR's path."""
        base = self.path(uid("k"))
        self.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-keyout", base + ".key", "-out", base + ".csr", "-subj",
                     "/CN=" + cn, *(["-text"] if text else []))
        return base + ".csr"

    def cert_facts(self, pem):
        """(subject CN, serial in upper-case hex) of a PEM certificate, from
        openssl x509; also checks that it chains to the fleet CA."""
        out = self.openssl("x509", "-noout", "-subject", "-serial", "-nameopt", "RFC2253",
                           input=pem)
        cn = re.search(r"subject=CN=([^,\n]+)", out).group(1)
        serial = re.search(r"serial=([0-9A-Fa-f]+)", out).group(1).upper().lstrip("0")
        cert = self.write(uid("c") + ".crt", pem)
        self.openssl("verify", "-CAfile", self.ca_file, cert)
        return cn, serial

    def enroll(self, *extra, max_uses="5"):
        """enroll create; returns the --json answer (with its claim token)."""
        return self.js("enroll", "create", uid("line"), "--max-uses", max_uses, *extra)

    # -- the fleet CA and HTTPS -------------------------------------------

    def test_ca_prints_the_fleet_ca(self):
        # No API token needed; --cacert and DROVER_CACERT both work.
        r = self.ok("ca", token=False)
        self.assertRegex(r.stdout, PEM_CERT)
        with open(self.ca_file) as f:
            self.assertEqual(r.stdout.strip(), f.read().strip())
        out = self.openssl("x509", "-noout", "-subject", input=r.stdout)
        self.assertIn("Drover fleet CA", out)
        r2 = self.ok("ca", token=False, cacert="env")
        self.assertEqual(r2.stdout, r.stdout)
        js = self.js("ca", token=False)
        self.assertEqual(js["certificate"].strip(), r.stdout.strip())
        out = self.path(uid("ca") + ".crt")
        r = self.ok("ca", "--out", out, token=False)
        self.assertIn(out, r.stdout)
        with open(out) as f:
            self.assertRegex(f.read(), PEM_CERT)

    def test_https_needs_the_ca(self):
        # Without the fleet CA the server's certificate cannot be verified:
        # exit 2, and the message says what to do.
        r = self.expect(2, "ca", token=False, cacert=False)
        self.assertIn("cannot reach server", r.stderr)
        self.assertIn("--cacert", r.stderr)
        r = self.expect(2, "device", "list", cacert=False)
        self.assertIn("--cacert", r.stderr)
        # A CA file that cannot be read is a usage error, before any request.
        r = self.expect(64, "ca", "--cacert", self.path("missing.crt"), token=False,
                        cacert=False)
        self.assertIn("missing.crt", r.stderr)
        r = self.expect(64, "ca", token=False, cacert=False,
                        env={"DROVER_CACERT": self.path("missing.crt")})
        self.assertIn("DROVER_CACERT", r.stderr)
        # The older commands work over HTTPS with the CA too.
        d = uid("tls")
        self.ok("device", "add", d)
        self.assertIn(d, self.ok("device", "list", cacert="env").stdout)

    # -- enrollment groups ------------------------------------------------

    def test_enroll_create_list_show_revoke(self):
        name = uid("line")
        r = self.ok("enroll", "create", name, "--max-uses", "3", "--expires-in", "7d",
                    "--tag", "site=lyon", "--tag", "floor=2", "--group", "sensors",
                    "--desired", '{"interval": 30}')
        eid = re.search(r"^id:\s+(enr_[0-9a-f]+)$", r.stdout, re.M).group(1)
        token = re.search(r"^claim token:\s+(drc_\S+)$", r.stdout, re.M).group(1)
        self.assertIn("shown only once", r.stderr)
        self.assertNotIn(token, r.stderr)

        # list: a table, never the token
        r = self.ok("enroll", "list")
        self.assertNotIn(token, r.stdout + r.stderr)
        row = [l for l in r.stdout.splitlines() if l.startswith(eid)]
        self.assertEqual(len(row), 1, r.stdout)
        self.assertEqual(row[0].split()[1:5], [name, "active", "0/3", "sensors"])
        lst = self.js("enroll", "list")
        mine = [e for e in lst["enrollments"] if e["id"] == eid]
        self.assertEqual(len(mine), 1)
        self.assertNotIn(token, json.dumps(lst))
        e = mine[0]
        self.assertEqual(e["tags"], {"site": "lyon", "floor": "2"})
        self.assertEqual(e["desired"], {"interval": 30})
        self.assertEqual(e["max_uses"], 3)
        self.assertAlmostEqual(e["expires_at"] - e["created_at"], 7 * 86400 * 1000, delta=5000)

        # show
        r = self.ok("enroll", "show", eid)
        self.assertRegex(r.stdout, r"(?m)^state:\s+active$")
        self.assertRegex(r.stdout, r"(?m)^uses:\s+0 of 3$")
        self.assertRegex(r.stdout, r"(?m)^group:\s+sensors$")
        tags = re.search(r"(?m)^tags:\s+(.*)$", r.stdout).group(1)
        self.assertEqual(sorted(tags.split(", ")), ["floor=2", "site=lyon"])
        self.assertNotIn(token, r.stdout)
        self.assertEqual(self.js("enroll", "show", eid)["name"], name)

        # revoke
        r = self.ok("enroll", "revoke", eid)
        self.assertIn("revoked enrollment " + eid, r.stdout)
        self.assertEqual(self.js("enroll", "show", eid)["state"], "revoked")
        r = self.expect(1, "enroll", "show", "enr_000000000000000000000000")
        self.assertIn("404 not_found", r.stderr)
        self.expect(1, "enroll", "revoke", "enr_000000000000000000000000")

        # --desired from a file
        f = self.write("desired.json", '{"mode": "eco"}')
        e = self.enroll("--desired", "@" + f)
        self.assertEqual(e["desired"], {"mode": "eco"})
        self.assertTrue(e["claim_token"].startswith("drc_"))

    def test_enroll_usage_errors(self):
        r = self.expect(64, "enroll", "create", "x")
        self.assertIn("--max-uses", r.stderr)
        for bad in (["--max-uses", "0"], ["--max-uses", "x"],
                    ["--max-uses", "1", "--expires-in", "10s"],
                    ["--max-uses", "1", "--group", "no spaces"],
                    ["--max-uses", "1", "--desired", "[1]"],
                    ["--max-uses", "1", "--tag", "nokey"],
                    ["--max-uses", "1", "--tag", "a=1", "--tag", "a=2"]):
            self.expect(64, "enroll", "create", "x", *bad)
        self.expect(64, "enroll", "show", "bad id")
        # A viewer may not make enrollments: the server's 403 is exit 1.
        viewer = self.js("token", "create", uid("v"), "--role", "viewer")["token"]
        argv = ["enroll", "create", "x", "--max-uses", "1"]
        r = self.cli(*argv, token=False, env={"DROVER_TOKEN": viewer})
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("403 forbidden", r.stderr)

    # -- provisioning ------------------------------------------------------

    def test_provision_over_https(self):
        e = self.enroll("--tag", "site=lyon", "--group", "sensors", "--desired",
                        '{"interval": 30}', max_uses="2")
        token = e["claim_token"]
        d = uid("zt")
        csr = self.key_csr(d)
        # No API token at all: not on the command line, not in the
        # environment, no data dir.
        r = self.ok("provision", "--claim-token", token, "--id", d, "--csr", csr, token=False)
        self.assertRegex(r.stdout, PEM_CERT)
        cn, serial = self.cert_facts(r.stdout)
        self.assertEqual(cn, d)
        self.assertIn("provisioned device " + d, r.stderr)
        self.assertNotIn(token, r.stdout + r.stderr)

        dev = self.server.device(d)
        self.assertEqual(dev["tags"], {"site": "lyon", "group": "sensors"})
        st, twin = self.server.api("GET", "/api/v1/devices/%s/twin" % d)
        self.assertEqual((st, twin["desired"]), (200, {"interval": 30}))
        self.assertEqual(self.js("enroll", "show", e["id"])["uses"], 1)
        certs = self.js("cert", "list", d)["certificates"]
        self.assertEqual([c["serial"].lstrip("0") for c in certs], [serial])

        # --out, the token from a file, DROVER_CACERT, a CSR with a -text dump.
        d2 = uid("zt")
        tokfile = self.write("claim.txt", token + "\n")
        out = self.path(d2 + ".crt")
        r = self.ok("provision", "--claim-token", "@" + tokfile, "--id", d2, "--csr",
                    self.key_csr(d2, text=True), "--out", out, token=False, cacert="env")
        self.assertIn("wrote certificate", r.stdout)
        with open(out) as f:
            self.assertEqual(self.cert_facts(f.read())[0], d2)
        e2 = self.js("enroll", "show", e["id"])
        self.assertEqual((e2["uses"], e2["state"]), (2, "used_up"))

        # Used up (403), unknown (401), an id that exists (409), a CSR for
        # another name (400): exit 1 with the server's reason.
        d3 = uid("zt")
        r = self.expect(1, "provision", "--claim-token", token, "--id", d3, "--csr",
                        self.key_csr(d3), token=False)
        self.assertIn("403 forbidden", r.stderr)
        self.assertIn("used up", r.stderr)
        e3 = self.enroll()
        r = self.expect(1, "provision", "--claim-token", "drc_" + "A" * 43, "--id", d3,
                        "--csr", self.key_csr(d3), token=False)
        self.assertIn("401 unauthorized", r.stderr)
        r = self.expect(1, "provision", "--claim-token", e3["claim_token"], "--id", d,
                        "--csr", self.key_csr(d), token=False)
        self.assertIn("409 conflict", r.stderr)
        r = self.expect(1, "provision", "--claim-token", e3["claim_token"], "--id", d3,
                        "--csr", self.key_csr("someone-else"), token=False)
        self.assertIn("400 bad_request", r.stderr)
        self.assertEqual(self.js("enroll", "show", e3["id"])["uses"], 0)
        # Revoked (403).
        self.ok("enroll", "revoke", e3["id"])
        r = self.expect(1, "provision", "--claim-token", e3["claim_token"], "--id", d3,
                        "--csr", self.key_csr(d3), token=False)
        self.assertIn("403 forbidden", r.stderr)
        self.assertIn("revoked", r.stderr)

        # Usage errors come before any request.
        for args in (["--id", d3, "--csr", csr], ["--claim-token", token, "--csr", csr],
                     ["--claim-token", token, "--id", d3],
                     ["--claim-token", token, "--id", "bad id", "--csr", csr],
                     ["--claim-token", token, "--id", d3, "--csr", self.path("none.csr")],
                     ["--claim-token", token, "--id", d3, "--csr", tokfile],
                     ["--claim-token", "@" + self.path("none.txt"), "--id", d3, "--csr", csr]):
            self.expect(64, "provision", *args, token=False)

    # -- certificates ------------------------------------------------------

    def test_cert_issue_list_revoke(self):
        d, _ = self.new_device("crt")
        r = self.ok("cert", "issue", d, "--csr", self.key_csr(d))
        self.assertRegex(r.stdout, PEM_CERT)
        cn, s1 = self.cert_facts(r.stdout)
        self.assertEqual(cn, d)

        out = self.path(d + ".crt")
        r = self.ok("cert", "issue", d, "--csr", self.key_csr(d), "--out", out)
        self.assertIn("wrote certificate", r.stdout)
        with open(out) as f:
            _, s2 = self.cert_facts(f.read())
        self.assertEqual(re.search(r"certificate ([0-9A-F]+) ", r.stdout).group(1).lstrip("0"), s2)

        js = self.js("cert", "issue", d, "--csr", self.key_csr(d))
        self.assertEqual(js["device"], d)
        with open(self.ca_file) as f:
            self.assertEqual(js["ca_certificate"].strip(), f.read().strip())
        s3 = js["serial"].lstrip("0")

        lst = self.js("cert", "list", d)["certificates"]
        self.assertEqual(sorted(c["serial"].lstrip("0") for c in lst), sorted([s1, s2, s3]))
        self.assertTrue(all(c["revoked_at"] is None for c in lst))
        r = self.ok("cert", "list", d)
        self.assertEqual(r.stdout.splitlines()[0].split()[:2], ["SERIAL", "STATE"])
        self.assertEqual(sum(" valid " in l for l in r.stdout.splitlines()), 3)

        serial = js["serial"]
        r = self.ok("cert", "revoke", serial)
        self.assertIn("revoked certificate " + serial, r.stdout)
        lst = {c["serial"]: c for c in self.js("cert", "list", d)["certificates"]}
        self.assertIsInstance(lst[serial]["revoked_at"], int)
        row = [l for l in self.ok("cert", "list", d).stdout.splitlines() if l.startswith(serial)]
        self.assertEqual(row[0].split()[1], "revoked")

        # Errors: unknown device and serial (exit 1), bad files (64).
        other = uid("nodev")
        r = self.expect(1, "cert", "issue", other, "--csr", self.key_csr(other))
        self.assertIn("404 not_found", r.stderr)
        r = self.expect(1, "cert", "revoke", "00AA")
        self.assertIn("404", r.stderr)
        r = self.expect(1, "cert", "issue", d, "--csr", self.key_csr("not-" + d))
        self.assertIn("400 bad_request", r.stderr)
        self.expect(64, "cert", "issue", d)
        r = self.expect(64, "cert", "issue", d, "--csr", self.ca_file)
        self.assertIn("not a PEM certificate signing request", r.stderr)
        self.expect(64, "cert", "list", "bad id")
        self.expect(1, "cert", "list", uid("nodev"))

    # -- import and revocation -----------------------------------------------

    def imported(self, r):
        """{id: secret} from the table `device import` prints."""
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "SECRET"])
        rows = dict(l.split() for l in lines[1:])
        for s in rows.values():
            self.assertRegex(s, SECRET)
        self.assertEqual(r.stderr.count("shown only once"), 1, r.stderr)
        return rows

    def test_device_import_csv(self):
        a, b = uid("csv"), uid("csv")
        f = self.write("devices.csv", "id,site,floor\r\n%s,lyon,2\r\n\r\n%s,\"pa,ris\",\r\n"
                       % (a, b))
        r = self.ok("device", "import", f)
        rows = self.imported(r)
        self.assertEqual(sorted(rows), sorted([a, b]))
        self.assertEqual(self.server.device(a)["tags"], {"site": "lyon", "floor": "2"})
        self.assertEqual(self.server.device(b)["tags"], {"site": "pa,ris"})
        # The printed secret is the device's MQTT password.
        self.device_client(a, rows[a]).connect_ok()

        # A bad row: its line number, nothing imported, exit 1.
        c, e = uid("csv"), uid("csv")
        f = self.write("bad.csv", "id,site\n%s,x\n\nbad id!,y\n%s,z\n" % (c, e))
        r = self.expect(1, "device", "import", f)
        self.assertIn("line 4", r.stderr)
        self.assertIn("400 bad_request", r.stderr)
        self.assertEqual(r.stdout, "")
        st, _ = self.server.api("GET", "/api/v1/devices/" + c)
        self.assertEqual(st, 404)
        # A device that exists is a bad row too.
        f = self.write("dup.csv", "id\n%s\n%s\n" % (c, a))
        r = self.expect(1, "device", "import", f)
        self.assertIn("line 3", r.stderr)

    def test_device_import_jsonl(self):
        a, b = uid("jl"), uid("jl")
        f = self.write("devices.jsonl", '{"id": "%s", "tags": {"site": "x", "n": 3}}\n'
                       '{"id": "%s"}\n' % (a, b))
        js = self.js("device", "import", f)
        self.assertEqual(js["count"], 2)
        self.assertEqual([d["id"] for d in js["devices"]], [a, b])
        self.assertEqual(self.server.device(a)["tags"], {"site": "x", "n": 3})
        # The table, with the format named and the file from stdin.
        c = uid("jl")
        r = self.ok("device", "import", "-", "--format", "jsonl", input='{"id": "%s"}\n' % c)
        self.assertEqual(list(self.imported(r)), [c])
        # A name without a known extension needs --format; --format wins.
        d = uid("jl")
        f = self.write("devices.txt", '{"id": "%s"}\n' % d)
        r = self.expect(64, "device", "import", f)
        self.assertIn("--format", r.stderr)
        self.expect(64, "device", "import", f, "--format", "xml")
        self.assertEqual(list(self.imported(self.ok("device", "import", f, "--format",
                                                        "jsonl"))), [d])
        # A bad line: its number, nothing imported.
        e, g = uid("jl"), uid("jl")
        f = self.write("bad.jsonl", '{"id": "%s"}\n{"id": "%s"}\n{"id": 5}\n' % (e, g))
        r = self.expect(1, "device", "import", f)
        self.assertIn("line 3", r.stderr)
        self.assertEqual(self.server.api("GET", "/api/v1/devices/" + e)[0], 404)
        # Empty files and files that cannot be read are usage errors.
        self.expect(64, "device", "import", self.write("empty.csv", "\n"))
        self.expect(64, "device", "import", self.path("none.csv"))

    def test_device_revoke(self):
        d, secret = self.new_device("rev")
        self.ok("cert", "issue", d, "--csr", self.key_csr(d))
        self.device_client(d, secret).connect_ok().disconnect()
        r = self.ok("device", "revoke", d)
        self.assertIn("revoked device " + d, r.stdout)
        # The secret no longer works, every certificate is revoked, and no
        # new certificate is issued.
        c = self.mqtt(d, d, secret)
        self.assertNotEqual(c.connect(), 0)
        certs = self.js("cert", "list", d)["certificates"]
        self.assertTrue(certs and all(isinstance(x["revoked_at"], int) for x in certs), certs)
        r = self.expect(1, "cert", "issue", d, "--csr", self.key_csr(d))
        self.assertIn("409 conflict", r.stderr)
        js = self.js("device", "revoke", d)
        self.assertEqual((js["id"], js["revoked"]), (d, True))
        r = self.expect(1, "device", "revoke", uid("nodev"))
        self.assertIn("404 not_found", r.stderr)
        self.expect(64, "device", "revoke", "bad id")


if __name__ == "__main__":
    unittest.main()
