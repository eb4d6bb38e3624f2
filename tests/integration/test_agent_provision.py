"""drover-agent provisions itself with a claim token and connects with
mutual TLS: droverd runs with its TLS listeners (--mqtts-listen,
--https-listen; the fleet CA and the server certificate are droverd's own),
an enrollment is made through the API, and the agent gets nothing but the
claim token, its id, the HTTPS URL and the CA file. Then: a restart does not
provision again, a forced renewal (renew_before = 1.0) puts a second
certificate on the server while telemetry keeps flowing, and refusals (bad
or used-up claim token, no CA to trust) end the agent with a clear message
instead of retrying.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ServerTestCase, uid, wait_for  # noqa: E402


def agent_path():
    p = os.path.join(harness.build_dir(), "drover-agent")
    if not os.access(p, os.X_OK):
        raise RuntimeError("drover-agent not found or not executable at %s" % p)
    return p


class ProvAgent:
    """One drover-agent process with a certificate-based config."""

    def __init__(self, tmp, device_id, conf):
        self.device_id = device_id
        self.dir = os.path.join(tmp, "agent-" + device_id)
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "agent.conf")
        self.conf = dict(conf)
        self.conf.setdefault("data_dir", self.data_dir)
        self.write_config()
        self.proc = None
        self.runs = 0
        self.stderr_path = None

    def write_config(self, **more):
        self.conf.update(more)
        with open(self.config_path, "w") as f:
            f.write("# written by test_agent_provision.py\n")
            for k, v in self.conf.items():
                f.write("%s = %s\n" % (k, v))

    def path(self, name):
        return os.path.join(self.data_dir, name)

    def start(self):
        self.runs += 1
        self.stderr_path = os.path.join(self.dir, "stderr.%d.log" % self.runs)
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:halt_on_error=1"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([agent_path(), "--config", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, cwd=self.dir, env=env)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        with open(self.stderr_path, "r", errors="replace") as f:
            return f.read()

    def logs(self, n=60):
        return "---- drover-agent %s (%s) tail:\n%s" % (
            self.config_path, self.stderr_path, harness.tail(self.stderr_path, n))

    def check_sanitizers(self):
        bad = harness.sanitizer_lines(self.stderr())
        if bad:
            raise AssertionError("drover-agent sanitizer report:\n  %s\n%s"
                                 % ("\n  ".join(bad[:10]), self.logs(120)))

    def wait_exit(self, timeout):
        """Waits for the agent to exit on its own; returns the exit code."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("drover-agent still running after %ds\n%s"
                                 % (timeout, self.logs()))
        self.check_sanitizers()
        return rc

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("drover-agent did not exit within %ds of SIGTERM\n%s"
                                 % (timeout, self.logs()))
        self.check_sanitizers()
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class AgentProvisionTest(ServerTestCase):
    """One droverd with TLS listeners for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.mqtts_port, cls.https_port = harness.free_ports(2)
        cls.server_args = ("--mqtts-listen", "%s:%d" % (harness.HOST, cls.mqtts_port),
                           "--https-listen", "%s:%d" % (harness.HOST, cls.https_port))
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self.s = self.server
        self.tmp = tempfile.mkdtemp(prefix="drover-agent-prov-it-")
        self.addCleanup(self._cleanup_tmp)
        self.agents = []
        self.addCleanup(self._kill_agents)

    def _cleanup_tmp(self):
        if os.environ.get("DROVER_KEEP_TMP"):
            sys.stderr.write("agent files kept in %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _kill_agents(self):
        for a in self.agents:
            a.kill()

    # -- helpers

    def wait(self, pred, timeout, msg, agent=None):
        try:
            return wait_for(pred, timeout=timeout, interval=0.1, msg=msg)
        except AssertionError as e:
            extra = ("\n" + agent.logs()) if agent is not None else ""
            raise AssertionError("%s%s\n%s" % (e, extra, self.s.logs(30)))

    def fleet_ca(self):
        """The fleet CA, as a device image would ship it."""
        st, js = self.s.api("GET", "/api/v1/ca", token=None)
        self.assertEqual(st, 200, js)
        return js["certificate"]

    def enrollment(self, max_uses=5, tags=None, group=None):
        body = {"name": uid("enr"), "max_uses": max_uses}
        if tags is not None:
            body["tags"] = tags
        if group is not None:
            body["group"] = group
        st, js = self.s.api("POST", "/api/v1/enrollments", body)
        self.assertEqual(st, 201, js)
        self.assertTrue(js["claim_token"].startswith("drc_"), js)
        return js

    def enrollment_uses(self, eid):
        st, js = self.s.api("GET", "/api/v1/enrollments/" + eid)
        self.assertEqual(st, 200, js)
        return js["uses"]

    def certificates(self, d):
        st, js = self.s.api("GET", "/api/v1/devices/%s/certificates" % d)
        self.assertEqual(st, 200, js)
        return js["certificates"] if isinstance(js, dict) else js

    def agent(self, device_id, claim_token, ship_ca=True, **conf):
        """An agent with only what zero-touch provisioning needs: the claim
        token, its id, the HTTPS URL, the CA file (in its data dir, where a
        device image would have put it) and the TLS listener."""
        c = {
            "server": "%s:%d" % (harness.HOST, self.mqtts_port),
            "device_id": device_id,
            "claim_token": claim_token,
            "api_url": "https://%s:%d" % (harness.HOST, self.https_port),
            "telemetry_interval_s": 1,
            "backoff_base_ms": 200,
            "backoff_max_ms": 1000,
            "log_level": "debug",
        }
        c.update(conf)
        a = ProvAgent(self.tmp, device_id, c)
        if "ca_file" not in conf:
            a.write_config(ca_file=a.path("ca.crt"))
        if ship_ca:
            with open(a.path("ca.crt"), "w") as f:
                f.write(self.fleet_ca())
        self.agents.append(a)
        return a

    def stop_agent(self, a):
        rc = a.stop()
        self.assertEqual(rc, 0, "drover-agent exit code after SIGTERM\n%s" % a.logs())

    def seq_values(self, d):
        return [p["value"] for p in self.s.all_points(d, {"metric": "agent_seq"})]

    # -- tests

    def test_provision_restart_and_renew(self):
        enr = self.enrollment(tags={"site": "plant-7", "line": "3"}, group="pumps")
        d = uid("prov")
        a = self.agent(d, enr["claim_token"]).start()

        # Provisioned: a key of its own (0600), its certificate, the CA.
        self.wait(lambda: os.path.exists(a.path("device.crt")), 20, "device.crt", a)
        self.assertEqual(stat.S_IMODE(os.stat(a.path("device.key")).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(a.path("device.crt")).st_mode), 0o644)
        with open(a.path("device.key")) as f:
            self.assertIn("PRIVATE KEY", f.read())
        self.assertIn("agent: provisioned %s" % d, a.stderr())

        # Registered with the enrollment's tags (and its group as a tag).
        dev = self.s.device(d)
        self.assertEqual(dev["tags"].get("site"), "plant-7", dev)
        self.assertEqual(dev["tags"].get("line"), "3", dev)
        self.assertEqual(dev["tags"].get("group"), "pumps", dev)
        self.assertEqual(self.enrollment_uses(enr["id"]), 1)
        certs = self.certificates(d)
        self.assertEqual(len(certs), 1, certs)
        with open(a.path("device.crt")) as f:
            first_pem = f.read()
        self.assertEqual(certs[0]["certificate"].strip(), first_pem.strip())

        # Telemetry over mutual TLS (the agent knows no secret, and its
        # server is the TLS listener).
        self.wait(lambda: len(self.seq_values(d)) >= 2, 20, "telemetry over mTLS", a)
        self.assertTrue(self.s.device(d)["online"])
        log = a.stderr()
        self.assertIn("(mutual TLS)", log)
        self.assertIn("with its certificate", log)

        # Restart: no second provisioning; the enrollment is used once.
        self.stop_agent(a)
        before = len(self.seq_values(d))
        a.start()
        self.wait(lambda: len(self.seq_values(d)) >= before + 2, 20,
                  "telemetry after the restart", a)
        self.assertNotIn("provisioning", a.stderr())
        self.assertEqual(self.enrollment_uses(enr["id"]), 1)
        self.assertEqual(len(self.certificates(d)), 1)

        # Forced renewal: a new key and certificate, telemetry goes on.
        self.stop_agent(a)
        with open(a.path("device.key")) as f:
            first_key = f.read()
        a.write_config(renew_before="1.0")
        a.start()
        self.wait(lambda: len(self.certificates(d)) == 2, 20, "a renewed certificate", a)
        self.wait(lambda: "certificate renewed" in a.stderr(), 10, "the renewal installed", a)
        self.wait(lambda: a.stderr().count("with its certificate") >= 2, 10,
                  "a reconnect with the new certificate", a)
        renewed_ms = harness.now_ms()
        with open(a.path("device.crt")) as f:
            new_pem = f.read()
        with open(a.path("device.key")) as f:
            new_key = f.read()
        self.assertNotEqual(new_pem.strip(), first_pem.strip())
        self.assertNotEqual(new_key, first_key)
        self.assertEqual(stat.S_IMODE(os.stat(a.path("device.key")).st_mode), 0o600)
        self.assertFalse(os.path.exists(a.path("device.key.new")))
        self.assertFalse(os.path.exists(a.path("device.crt.new")))
        certs = self.certificates(d)
        self.assertIn(new_pem.strip(), [c["certificate"].strip() for c in certs])
        pts_before = len(self.s.all_points(d, {"metric": "agent_seq", "since": renewed_ms}))
        self.wait(lambda: len(self.s.all_points(d, {"metric": "agent_seq",
                                                    "since": renewed_ms})) >= pts_before + 3,
                  20, "telemetry after the renewal", a)
        # Only one renewal per run, even though 1.0 makes every check due.
        time.sleep(1.5)
        self.assertEqual(len(self.certificates(d)), 2)
        self.assertEqual(a.stderr().count("renewing"), 1, a.logs())
        self.assertNotIn("connection lost", a.stderr())
        self.stop_agent(a)
        values = self.seq_values(d)
        self.assertEqual(len(values), len(set(values)), "duplicated telemetry seq")
        self.assertEqual(self.enrollment_uses(enr["id"]), 1)

    def test_bad_claim_token_exits(self):
        d = uid("prov")
        a = self.agent(d, "drc_not-a-real-token").start()
        rc = a.wait_exit(20)
        self.assertEqual(rc, 3, a.logs())
        log = a.stderr()
        self.assertIn("refused", log)
        self.assertIn("HTTP 401", log)
        self.assertIn("claim token is unknown", log)
        self.assertIn("not retrying", log)
        self.assertEqual(log.count("agent: provisioning %s at" % d), 1, "retried a refusal")
        self.assertFalse(os.path.exists(a.path("device.crt")))
        st, _ = self.s.api("GET", "/api/v1/devices/" + d)
        self.assertEqual(st, 404)

    def test_used_up_claim_token_exits(self):
        enr = self.enrollment(max_uses=1)
        d1, d2 = uid("prov"), uid("prov")
        a = self.agent(d1, enr["claim_token"]).start()
        self.wait(lambda: os.path.exists(a.path("device.crt")), 20, "first device provisioned",
                  a)
        self.stop_agent(a)
        b = self.agent(d2, enr["claim_token"]).start()
        rc = b.wait_exit(20)
        self.assertEqual(rc, 3, b.logs())
        self.assertIn("HTTP 403", b.stderr())
        self.assertIn("ask for a new one", b.stderr())
        # The same id again (its data dir lost): 409, id taken.
        enr2 = self.enrollment(max_uses=3)
        c = self.agent(d1 + "-again", enr2["claim_token"])
        c.write_config(device_id=d1)
        c.start()
        rc = c.wait_exit(20)
        self.assertEqual(rc, 3, c.logs())
        self.assertIn("HTTP 409", c.stderr())
        self.assertIn("already registered", c.stderr())
        self.assertEqual(self.enrollment_uses(enr2["id"]), 0)

    def test_no_ca_refuses_to_provision(self):
        enr = self.enrollment()
        d = uid("prov")
        a = self.agent(d, enr["claim_token"], ship_ca=False).start()
        rc = a.wait_exit(20)
        self.assertEqual(rc, 2, a.logs())
        self.assertIn("ca_file does not exist", a.stderr())
        self.assertIn("insecure_bootstrap", a.stderr())
        self.assertEqual(self.enrollment_uses(enr["id"]), 0)

    def test_insecure_bootstrap_pins_the_ca(self):
        enr = self.enrollment()
        d = uid("prov")
        a = self.agent(d, enr["claim_token"], ship_ca=False, insecure_bootstrap="true").start()
        self.wait(lambda: len(self.seq_values(d)) >= 1, 20, "telemetry after TOFU", a)
        self.assertIn("WITHOUT verifying", a.stderr())
        with open(a.path("ca.crt")) as f:
            self.assertEqual(f.read().strip(), self.fleet_ca().strip())
        self.stop_agent(a)

    def test_unreachable_api_retries_until_stopped(self):
        enr = self.enrollment()
        d = uid("prov")
        dead = harness.free_port()
        a = self.agent(d, enr["claim_token"],
                       api_url="https://%s:%d" % (harness.HOST, dead)).start()
        self.wait(lambda: a.stderr().count("provisioning again in") >= 2, 15,
                  "two retries", a)
        self.assertTrue(a.alive())
        self.stop_agent(a)
        self.assertEqual(self.enrollment_uses(enr["id"]), 0)

    def test_get_config_hides_claim_token(self):
        enr = self.enrollment()
        d = uid("prov")
        a = self.agent(d, enr["claim_token"]).start()
        self.wait(lambda: self.s.device(d).get("online"), 20, "device online", a)
        st, js = self.s.api("POST", "/api/v1/devices/%s/commands" % d, {"name": "get-config"})
        self.assertEqual(st, 201, js)
        cid = js["id"]
        res = self.wait(lambda: (lambda r: r if r[1].get("status") not in ("queued", "sent")
                                 else None)(self.s.api("GET", "/api/v1/commands/%s" % cid)),
                        15, "get-config result", a)[1]
        self.assertEqual(res["status"], "succeeded", res)
        cfg = res["result"]
        self.assertEqual(cfg["device_id"], d)
        self.assertNotIn("claim_token", cfg)
        self.assertNotIn(enr["claim_token"], json.dumps(res))
        self.assertEqual(cfg.get("renew_before"), 0.3)
        self.assertEqual(cfg.get("mqtt_tls"), "auto")
        self.stop_agent(a)


if __name__ == "__main__":
    harness.main()
