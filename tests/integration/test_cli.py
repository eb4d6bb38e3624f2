"""The drover CLI against a live server: device add/list/show/rm/
rotate-secret and telemetry, as tables and as --json, with the server and
token from flags or from DROVER_SERVER / DROVER_TOKEN.

Assumed command line (issue #2): global flags --server URL --token T
before the subcommand; `device add ID [--tag k=v]...`, `device list`,
`device show ID`, `device rm ID`, `device rotate-secret ID`,
`telemetry ID [--metric M] [--since T]`; --json after the subcommand's
arguments. Everything goes through cli() below, so a change of syntax is
one edit."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import rfc3339, uid  # noqa: E402

T = 1650000000000


class CliTest(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = harness.cli_path()
        cls.cwd = tempfile.mkdtemp(prefix="drover-cli-")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.cwd, ignore_errors=True)

    def cli(self, *args, flags=True, as_json=False, env=None, timeout=20):
        argv = [self.binary]
        if flags:
            argv += ["--server", self.server.base_url, "--token", self.server.token]
        argv += list(args)
        if as_json:
            argv.append("--json")
        e = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
        e["HOME"] = self.cwd  # no config file from the real home
        e.update(env or {})
        return self._run(argv, e, timeout)

    def _run(self, argv, env, timeout):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=env, cwd=self.cwd)
        except subprocess.TimeoutExpired:
            self.fail("drover timed out: %s" % " ".join(argv))

    def ok(self, *args, **kw):
        r = self.cli(*args, **kw)
        self.assertEqual(r.returncode, 0, "drover %s: rc %d\nstdout: %s\nstderr: %s"
                         % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def js(self, *args, **kw):
        r = self.ok(*args, as_json=True, **kw)
        try:
            return json.loads(r.stdout)
        except ValueError:
            self.fail("drover %s --json printed no JSON:\n%s" % (" ".join(args), r.stdout))

    @staticmethod
    def items(obj, key):
        """A list answer may be printed bare or wrapped as the API does."""
        if isinstance(obj, dict):
            return obj[key]
        return obj

    # -----------------------------------------------------------------------

    def test_device_add_json_gives_working_secret(self):
        d = uid("cli")
        out = self.js("device", "add", d, "--tag", "site=berlin", "--tag", "floor=3")
        self.assertEqual(out["id"], d)
        self.assertIsInstance(out["secret"], str)
        dev = self.server.device(d)
        self.assertEqual(dev["tags"].get("site"), "berlin")
        self.assertIn(dev["tags"].get("floor"), ("3", 3))
        c = self.device_client(d, out["secret"])
        self.assertEqual(c.connect(), 0, "the secret printed by the CLI does not work")
        c.disconnect()

    def test_device_add_table(self):
        d = uid("clit")
        r = self.ok("device", "add", d)
        self.assertIn(d, r.stdout)
        self.assertEqual(self.server.api("GET", "/api/v1/devices/" + d)[0], 200)
        r = self.cli("device", "add", d)
        self.assertNotEqual(r.returncode, 0, "adding an existing id must fail")
        self.assertTrue(r.stderr.strip(), "no error message for a conflict")

    def test_device_list(self):
        a, _ = self.new_device("lsa", {"role": "x"})
        b, _ = self.new_device("lsb")
        out = self.items(self.js("device", "list"), "devices")
        ids = [x["id"] for x in out]
        self.assertIn(a, ids)
        self.assertIn(b, ids)
        self.assertEqual(ids, sorted(ids))
        r = self.ok("device", "list")
        self.assertIn(a, r.stdout)
        self.assertIn(b, r.stdout)

    def test_device_show(self):
        d, secret = self.new_device("show", {"site": "paris"})
        self.send_telemetry(d, secret, [{"temp": 21.5, "ts": T}])
        out = self.js("device", "show", d)
        self.assertEqual(out["id"], d)
        self.assertEqual(out["tags"], {"site": "paris"})
        self.assertIs(out["online"], False)
        self.assertEqual(out["telemetry"]["temp"]["value"], 21.5)
        r = self.ok("device", "show", d)
        self.assertIn(d, r.stdout)
        self.assertIn("paris", r.stdout)
        r = self.cli("device", "show", "no-such-device")
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(r.stderr.strip(), "no error message for 404")

    def test_device_rotate_secret(self):
        d, old = self.new_device("crot")
        out = self.js("device", "rotate-secret", d)
        self.assertEqual(out["id"], d)
        self.assertNotEqual(out["secret"], old)
        c = self.device_client(d, old)
        self.assertNotEqual(c.connect(), 0, "old secret still works")
        c.close()
        c = self.device_client(d, out["secret"])
        self.assertEqual(c.connect(), 0, "new secret from the CLI does not work")
        c.disconnect()

    def test_device_rm(self):
        d, _ = self.new_device("crm")
        self.ok("device", "rm", d)
        self.assertEqual(self.server.api("GET", "/api/v1/devices/" + d)[0], 404)
        r = self.cli("device", "rm", d)
        self.assertNotEqual(r.returncode, 0, "removing a missing device must fail")

    def test_telemetry(self):
        d, secret = self.new_device("ctel")
        self.send_telemetry(d, secret, [{"temp": 20 + i, "hum": 40 + i, "ts": T + i * 1000}
                                        for i in range(6)])
        pts = self.items(self.js("telemetry", d), "points")
        self.assertEqual(len(pts), 12)
        pts = self.items(self.js("telemetry", d, "--metric", "temp"), "points")
        self.assertEqual([p["value"] for p in pts], [20, 21, 22, 23, 24, 25])
        pts = self.items(self.js("telemetry", d, "--metric", "temp", "--since", str(T + 3000)),
                         "points")
        self.assertEqual([p["value"] for p in pts], [23, 24, 25])
        pts = self.items(self.js("telemetry", d, "--metric", "hum", "--since",
                                 rfc3339(T + 4000)), "points")
        self.assertEqual([p["value"] for p in pts], [44, 45])
        r = self.ok("telemetry", d, "--metric", "temp")
        self.assertIn("temp", r.stdout)
        self.assertIn("25", r.stdout)

    def test_env_server_and_token(self):
        d, _ = self.new_device("env")
        env = {"DROVER_SERVER": self.server.base_url, "DROVER_TOKEN": self.server.token}
        out = self.js("device", "show", d, flags=False, env=env)
        self.assertEqual(out["id"], d)
        r = self.ok("device", "list", flags=False, env=env)
        self.assertIn(d, r.stdout)
        bad = dict(env, DROVER_TOKEN="drv_" + "x" * 43)
        r = self.cli("device", "list", flags=False, env=bad)
        self.assertNotEqual(r.returncode, 0, "wrong token accepted")
        self.assertRegex(r.stderr.lower(), "401|unauthori[sz]ed")

    def test_flags_override_env(self):
        d, _ = self.new_device("envflag")
        env = {"DROVER_SERVER": "http://127.0.0.1:1", "DROVER_TOKEN": "drv_" + "y" * 43}
        out = self.js("device", "show", d, env=env)
        self.assertEqual(out["id"], d)

    def test_exit_codes(self):
        # drover help: 0 ok, 1 the server refused, 2 unreachable, 64 usage.
        r = self.cli("no-such-command")
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertTrue(r.stderr.strip())
        r = self.cli("device", "add")  # missing id
        self.assertEqual(r.returncode, 64, r.stderr)
        r = self.cli("device", "show", "no-such-device")
        self.assertEqual(r.returncode, 1, r.stderr)
        r = self.cli("device", "list", flags=False,
                     env={"DROVER_SERVER": self.server.base_url, "DROVER_TOKEN": "drv_" + "z" * 43})
        self.assertEqual(r.returncode, 1, r.stderr)
        r = self.cli("device", "list", flags=False,
                     env={"DROVER_SERVER": "http://127.0.0.1:%d" % harness.free_port(),
                          "DROVER_TOKEN": self.server.token})
        self.assertEqual(r.returncode, 2, "unreachable server: %s" % r.stderr)
        self.assertTrue(r.stderr.strip())


if __name__ == "__main__":
    harness.main()
