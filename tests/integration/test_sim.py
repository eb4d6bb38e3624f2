"""drover-sim against the real droverd: a 200-device fleet created through
the API publishes QoS 1 telemetry for 10 seconds and every message is
acknowledged and stored; MQTT 5 with a credentials file; commands (single
and bulk) and twin changes answered by simulated devices; a reconnect
storm; several worker processes; and the refusals (targets outside
loopback, TLS, wrong secrets)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HOST  # noqa: E402


def sim_path():
    p = os.environ.get("DROVER_SIM") or os.path.join(harness.build_dir(), "drover-sim")
    if not os.access(p, os.X_OK):
        raise RuntimeError("drover-sim is not built: %s" % p)
    return p


class SimTest(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.sim = sim_path()
        cls.tmp = tempfile.mkdtemp(prefix="drover-sim-it-")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def mqtt_target(self):
        return "%s:%d" % (HOST, self.server.mqtt_port)

    def api_url(self):
        return "http://%s:%d" % (HOST, self.server.http_port)

    def run_sim(self, args, timeout=90, expect_rc=0):
        """Runs drover-sim to the end with --json; returns the report."""
        argv = [self.sim, "--mqtt", self.mqtt_target(), "--json", "--quiet"] + args
        r = harness.run(argv, timeout=timeout)
        if expect_rc is not None and r.returncode != expect_rc:
            self.fail("drover-sim exited %d (wanted %d)\nargv: %s\nstdout: %s\nstderr: %s\n%s"
                      % (r.returncode, expect_rc, " ".join(argv), r.stdout[-2000:],
                         r.stderr[-3000:], self.server.logs()))
        try:
            return json.loads(r.stdout)
        except ValueError:
            self.fail("drover-sim printed no JSON report: %r\nstderr: %s"
                      % (r.stdout[-500:], r.stderr[-2000:]))

    def creds(self, name):
        return os.path.join(self.tmp, name)

    # ------------------------------------------------------------------

    def test_qos1_fleet_acknowledged_and_stored(self):
        """200 devices created through the API, 10 s of QoS 1 telemetry:
        every message acknowledged, every acknowledged message stored."""
        n = 200
        rep = self.run_sim(["--api", self.api_url(), "--token", self.server.token,
                            "--devices", str(n), "--id-prefix", "it-q1-",
                            "--fleet-tag", "it-q1", "--connect-rate", "500",
                            "--telemetry-interval", "1s", "--qos", "1",
                            "--duration", "10s", "--write-creds", self.creds("q1")])
        self.assertEqual(rep["devices"], n)
        self.assertEqual(rep["connections"]["connected_at_end"], n, rep)
        self.assertEqual(rep["errors"]["total"], 0, rep["errors"])
        tel = rep["telemetry"]
        self.assertGreaterEqual(tel["sent"], n * 8, tel)
        self.assertEqual(tel["acked"], tel["sent"], tel)
        self.assertEqual(tel["inflight_at_end"], 0, tel)
        self.assertIsNotNone(tel["puback_ms"])
        self.assertEqual(tel["puback_ms"]["n"], tel["acked"])

        with open(self.creds("q1")) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        self.assertEqual(len(ids), n)
        self.assertEqual(len(set(ids)), n)
        # One "temp" point per acknowledged message, across the fleet.
        stored = 0
        for d in ids:
            pts = self.server.all_points(d, {"metric": "temp"})
            self.assertGreaterEqual(len(pts), 1, "device %s stored nothing" % d)
            stored += len(pts)
        self.assertEqual(stored, tel["acked"],
                         "stored %d points for %d acknowledged messages" % (stored, tel["acked"]))
        st, js = self.server.api("GET", "/api/v1/devices?tag=fleet=it-q1&limit=1000")
        self.assertEqual(st, 200)
        self.assertEqual(len(js["devices"]), n, "created devices carry the fleet tag")

    def test_mqtt5_with_creds_file_and_existing_devices(self):
        # A second creation with the same ids issues new secrets (409 ->
        # rotate) instead of failing.
        args = ["--api", self.api_url(), "--token", self.server.token, "--devices", "20",
                "--id-prefix", "it-c5-", "--create-only"]
        rep = self.run_sim(args + ["--write-creds", self.creds("c5a")])
        self.assertEqual((rep["devices"], rep["created"], rep["existing"]), (20, 20, 0))
        rep = self.run_sim(args + ["--write-creds", self.creds("c5b")])
        self.assertEqual((rep["devices"], rep["created"], rep["existing"]), (20, 0, 20))
        a = open(self.creds("c5a")).read().split("\n")
        b = open(self.creds("c5b")).read().split("\n")
        self.assertEqual([x.split()[0] for x in a if x], [x.split()[0] for x in b if x])
        self.assertNotEqual(a, b, "secrets were rotated")
        rep = self.run_sim(["--creds", self.creds("c5b"), "--protocol", "5",
                            "--telemetry-interval", "200ms", "--qos", "1", "--shape", "batch:3",
                            "--seq", "--duration", "3s"])
        self.assertEqual(rep["protocol"], "5")
        self.assertEqual(rep["connections"]["connected_at_end"], 20)
        self.assertEqual(rep["errors"]["total"], 0, rep["errors"])
        self.assertGreater(rep["telemetry"]["acked"], 0)
        self.assertEqual(rep["telemetry"]["acked"], rep["telemetry"]["sent"])
        # The old secrets no longer work: every CONNACK refused (0x86).
        rep = self.run_sim(["--creds", self.creds("c5a"), "--protocol", "5", "--duration", "2s",
                            "--telemetry-interval", "off", "--no-reconnect"], expect_rc=1)
        self.assertEqual(rep["errors"]["connack_refused"], 20, rep["errors"])
        self.assertEqual(rep["errors"]["connack_codes"], {"0x86": 20})
        self.assertEqual(rep["connections"]["connected_at_end"], 0)

    def test_commands_twin_and_bulk(self):
        """Simulated devices answer commands (one by one and in bulk) and
        report twin changes, through the real API."""
        n = 10
        status = self.creds("status-cmd.json")
        argv = [self.sim, "--mqtt", self.mqtt_target(), "--api", self.api_url(),
                "--token", self.server.token, "--devices", str(n), "--id-prefix", "it-cmd-",
                "--fleet-tag", "it-cmd", "--telemetry-interval", "off",
                "--command-delay", "100ms", "--duration", "40s", "--json", "--quiet",
                "--status-file", status, "--report-interval", "200ms"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def ready():
                with open(status) as f:
                    return json.load(f)["connections"]["ready_at_end"] == n
            harness.wait_for(ready, timeout=20, msg="the sim's devices connected and subscribed")
            dev = "it-cmd-000003"
            st, cmd = self.server.api("POST", "/api/v1/devices/%s/commands" % dev,
                                      {"name": "reboot", "params": {"delay": 1}, "timeout_s": 30})
            self.assertEqual(st, 201, cmd)
            st, got = self.server.api("GET", "/api/v1/commands/%s?wait=10" % quote(cmd["id"]))
            harness.wait_for(
                lambda: self.server.api("GET", "/api/v1/commands/%s" % quote(cmd["id"]))[1]
                ["status"] == "succeeded", timeout=10, msg="the command succeeded")
            st, got = self.server.api("GET", "/api/v1/commands/%s" % quote(cmd["id"]))
            self.assertEqual(got["result"], {"sim": True}, got)  # the result is the output

            st, js = self.server.api("PUT", "/api/v1/devices/%s/twin/desired" % dev,
                                     {"fan": "on"})
            self.assertEqual(st, 200, js)
            want = js["desired_version"]

            def applied():
                st, t = self.server.api("GET", "/api/v1/devices/%s/twin" % dev)
                return st == 200 and t["reported"].get("applied") == want
            harness.wait_for(applied, timeout=10, msg="reported applied == desired_version")

            t0 = time.monotonic()
            st, job = self.server.api("POST", "/api/v1/bulk/commands",
                                      {"target": {"tag": "fleet=it-cmd"}, "name": "ping",
                                       "params": {}, "timeout_s": 30})
            self.assertEqual(st, 202, job)
            self.assertEqual(job["total"], n)

            def done():
                st, j = self.server.api("GET", "/api/v1/jobs/%s?limit=1" % job["id"])
                return j if j["status"] == "done" else None
            j = harness.wait_for(done, timeout=20, msg="the bulk job done")
            self.assertEqual(j["counts"].get("succeeded"), n, j["counts"])
            self.assertLess(time.monotonic() - t0, 10)
        finally:
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err[-2000:])
        rep = json.loads(out)
        self.assertTrue(rep["interrupted"])
        self.assertEqual(rep["commands"]["received"], 1 + n)
        self.assertEqual(rep["commands"]["acked"], 1 + n)
        self.assertEqual(rep["commands"]["failed"], 0)
        self.assertGreaterEqual(rep["commands"]["round_trip_ms"]["min"], 100)
        # Every device gets its desired state on subscribe; dev 3 a change.
        self.assertGreaterEqual(rep["twin"]["desired_received"], 1)
        self.assertEqual(rep["twin"]["reported_acked"], rep["twin"]["reported_sent"])
        self.assertEqual(rep["errors"]["total"], 0, rep["errors"])

    def test_failed_share(self):
        rep_args = ["--api", self.api_url(), "--token", self.server.token, "--devices", "4",
                    "--id-prefix", "it-fail-", "--fleet-tag", "it-fail",
                    "--telemetry-interval", "off", "--command-fail-share", "100%",
                    "--duration", "30s", "--json", "--quiet"]
        status = self.creds("status-fail.json")
        p = subprocess.Popen([self.sim, "--mqtt", self.mqtt_target(), "--status-file", status,
                              "--report-interval", "200ms"] + rep_args,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            harness.wait_for(lambda: json.load(open(status))["connections"]["ready_at_end"] == 4,
                             timeout=20, msg="4 devices ready")
            st, job = self.server.api("POST", "/api/v1/bulk/commands",
                                      {"target": {"tag": "fleet=it-fail"}, "name": "x",
                                       "timeout_s": 30})
            self.assertEqual(st, 202, job)
            j = harness.wait_for(
                lambda: (lambda j: j if j["status"] == "done" else None)(
                    self.server.api("GET", "/api/v1/jobs/%s?limit=1" % job["id"])[1]),
                timeout=20, msg="the bulk job done")
            self.assertEqual(j["counts"].get("failed"), 4, j["counts"])
        finally:
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=30)
        rep = json.loads(out)
        self.assertEqual(rep["commands"]["failed"], 4)

    def test_reconnect_storm(self):
        rep = self.run_sim(["--api", self.api_url(), "--token", self.server.token,
                            "--devices", "100", "--id-prefix", "it-rc-", "--connect-rate", "0",
                            "--telemetry-interval", "500ms", "--drop-at", "2s",
                            "--backoff-min", "100ms", "--backoff-max", "1s",
                            "--duration", "6s", "--workers", "2"])
        self.assertEqual(rep["workers"], 2)
        rc = rep["reconnect"]
        self.assertIsNotNone(rc)
        self.assertIsNotNone(rc["recovered_s"], "every device came back")
        self.assertLess(rc["recovered_s"], 4)
        self.assertEqual(rep["connections"]["accepted"], 200)
        self.assertEqual(rep["connections"]["reconnects"], 100)
        self.assertEqual(rep["connections"]["connected_at_end"], 100)
        self.assertEqual(rep["errors"]["total"], 0, rep["errors"])

    def test_workers_and_source_addresses(self):
        rep = self.run_sim(["--api", self.api_url(), "--token", self.server.token,
                            "--devices", "60", "--id-prefix", "it-w-", "--workers", "3",
                            "--source-addrs", "3", "--telemetry-interval", "0",
                            "--messages", "3000", "--inflight", "4", "--wait-all",
                            "--duration", "30s"])
        self.assertEqual(rep["workers"], 3)
        self.assertEqual(rep["telemetry"]["sent"], 3000)
        self.assertEqual(rep["telemetry"]["acked"], 3000)
        self.assertEqual(rep["errors"]["total"], 0, rep["errors"])
        self.assertLess(rep["elapsed_s"], 30, "stopped once the messages were acknowledged")

    def test_refusals(self):
        cases = [
            (["--no-auth", "--mqtt", "10.1.2.3:1883"], "--allow-remote"),
            (["--no-auth", "--api", "http://192.168.0.1:8080", "--token", "x"], "--allow-remote"),
            (["--no-auth", "--tls"], "not yet supported"),
            (["--devices", "10"], "no credentials"),
            (["--no-auth", "--duration", "25h"], "--duration"),
        ]
        for args, says in cases:
            r = harness.run([self.sim] + args, timeout=10)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(says, r.stderr, args)
        r = harness.run([self.sim, "--help"], timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--connect-rate", r.stdout)
        # Unknown device: refused, counted, not retried; exit status 1.
        bogus = self.creds("bogus")
        with open(bogus, "w") as f:
            f.write("no-such-device-1 notasecret\n")
        rep = self.run_sim(["--creds", bogus, "--duration", "2s", "--telemetry-interval", "off"],
                           expect_rc=1)
        self.assertEqual(rep["errors"]["connack_codes"], {"0x04": 1})
        self.assertEqual(rep["connections"]["attempts"], 1)


if __name__ == "__main__":
    harness.main()
