"""drover-agent against the real droverd: health telemetry, store and
forward across a server restart (every queued message exactly once),
persistence of the queue across an agent restart, desired state applied
and reported, built-in and user commands, refusals, and a clean SIGTERM.

Each agent runs as its own process with a config file and data dir in a
temporary directory; its stderr is kept in a file and shown on failure.
"""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Droverd, ServerTestCase, uid, wait_for  # noqa: E402

AGENT_METRICS = ("cpu_pct", "mem_used_bytes", "mem_total_bytes", "load1", "load5", "load15",
                 "uptime_s", "net_rx_bytes", "net_tx_bytes", "agent_seq",
                 "agent_queue_dropped", "agent_queue_depth")


def agent_path():
    p = os.path.join(harness.build_dir(), "drover-agent")
    if not os.access(p, os.X_OK):
        raise RuntimeError("drover-agent not found or not executable at %s" % p)
    return p


def write_script(path, body, mode=0o755):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, mode)


class Agent:
    """One drover-agent process with its own config and data dir."""

    def __init__(self, server, device_id, secret, tmp, **conf):
        self.server = server
        self.device_id = device_id
        self.dir = os.path.join(tmp, "agent-" + device_id)
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, "agent.conf")
        c = {
            "server": "%s:%d" % (harness.HOST, server.mqtt_port),
            "device_id": device_id,
            "secret": secret,
            "data_dir": self.data_dir,
            "telemetry_interval_s": 1,
            "backoff_base_ms": 200,
            "backoff_max_ms": 1000,
            "log_level": "debug",
        }
        c.update(conf)
        with open(self.config_path, "w") as f:
            f.write("# written by test_agent.py\n")
            for k, v in c.items():
                f.write("%s = %s\n" % (k, v))
        self.proc = None
        self.runs = 0
        self.stderr_path = None

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

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signals the agent, waits, and returns its exit code; a sanitizer
        report fails."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("drover-agent did not exit within %ds of %s\n%s"
                                 % (timeout, signal.Signals(sig).name, self.logs()))
        bad = harness.sanitizer_lines(self.stderr())
        if bad:
            raise AssertionError("drover-agent sanitizer report:\n  %s\n%s"
                                 % ("\n  ".join(bad[:10]), self.logs(120)))
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class AgentCase(unittest.TestCase):
    """Helpers shared by the agent tests. self.s is the server."""

    def make_tmp(self):
        """A temp dir for agent configs, data and logs. Failures quote the
        agent's log; DROVER_KEEP_TMP=1 keeps the files."""
        tmp = tempfile.mkdtemp(prefix="drover-agent-it-")
        self.addCleanup(self._cleanup_tmp, tmp)
        return tmp

    def _cleanup_tmp(self, tmp):
        if os.environ.get("DROVER_KEEP_TMP"):
            sys.stderr.write("agent files kept in %s\n" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    def agent(self, device_id, secret, **conf):
        a = Agent(self.s, device_id, secret, self.tmp, **conf)
        self.agents.append(a)
        return a

    def stop_agent(self, a):
        rc = a.stop()
        self.assertEqual(rc, 0, "drover-agent exit code after SIGTERM\n%s" % a.logs())

    def kill_agents(self):
        for a in self.agents:
            a.kill()

    def wait(self, pred, timeout, msg, agent=None):
        try:
            return wait_for(pred, timeout=timeout, interval=0.1, msg=msg)
        except AssertionError as e:
            extra = ("\n" + agent.logs()) if agent is not None else ""
            raise AssertionError("%s%s\n%s" % (e, extra, self.s.logs(20)))

    def telemetry_latest(self, d):
        return self.s.device(d).get("telemetry") or {}

    def seq_values(self, d):
        return [p["value"] for p in self.s.all_points(d, {"metric": "agent_seq"})]

    def assert_exactly_once(self, values, what):
        dups = sorted({v for v in values if values.count(v) > 1})
        self.assertEqual(dups, [], "%s: duplicated seq values" % what)
        vs = sorted(values)
        missing = sorted(set(range(vs[0], vs[-1] + 1)) - set(vs))
        self.assertEqual(missing, [], "%s: seq gaps between %d and %d" % (what, vs[0], vs[-1]))


# ---------------------------------------------------------------- telemetry

class AgentTelemetryTest(AgentCase):
    """One server per test: these tests stop and restart it."""

    def setUp(self):
        self.s = Droverd()
        self.addCleanup(self.s.cleanup)
        self.s.start()
        self.tmp = self.make_tmp()
        self.agents = []
        self.addCleanup(self.kill_agents)

    def new_device(self):
        d = uid("agent")
        return d, self.s.create_device(d)

    def test_health_telemetry_arrives(self):
        d, secret = self.new_device()
        a = self.agent(d, secret).start()
        tel = self.wait(lambda: (lambda t: t if all(m in t for m in AGENT_METRICS) else None)(
            self.telemetry_latest(d)), 15, "every health metric of %s" % d, a)
        self.assertTrue(0 <= tel["cpu_pct"]["value"] <= 100, tel["cpu_pct"])
        self.assertGreater(tel["mem_total_bytes"]["value"], 0)
        self.assertLessEqual(tel["mem_used_bytes"]["value"], tel["mem_total_bytes"]["value"])
        self.assertGreater(tel["uptime_s"]["value"], 0)
        self.assertEqual(tel["agent_queue_dropped"]["value"], 0)
        disks = [k for k in tel if k.startswith("disk_total_bytes:")]
        self.assertTrue(disks, "no disk metric in %s" % sorted(tel))
        for k in disks:
            self.assertLessEqual(len(k), 128)
            used = tel.get("disk_used_bytes:" + k.split(":", 1)[1])
            self.assertIsNotNone(used, "no used bytes for %s" % k)
            self.assertLessEqual(used["value"], tel[k]["value"])
        self.assertTrue(self.s.device(d)["online"])
        # One sample a second: a few more arrive, in order, without gaps.
        first = len(self.seq_values(d))
        self.wait(lambda: len(self.seq_values(d)) >= first + 2, 10, "two more samples", a)
        self.stop_agent(a)
        self.assertIn("agent: stopping", a.stderr())
        self.wait(lambda: not self.s.device(d)["online"], 5, "device offline after SIGTERM", a)
        self.assert_exactly_once(self.seq_values(d), "one run")

    def test_store_and_forward_across_server_restart(self):
        d, secret = self.new_device()
        a = self.agent(d, secret).start()
        self.wait(lambda: len(self.seq_values(d)) >= 2, 15, "first samples", a)
        # A clean stop of droverd is checked too, but only at the end, so
        # that a server problem does not hide what the agent did.
        rc = self.s.signal_and_wait(signal.SIGTERM)
        try:
            self.s.check_exit(rc, "stop (SIGTERM) with an agent connected")
            stop_problem = None
        except AssertionError as e:
            stop_problem = e
        down_ms = harness.now_ms()
        time.sleep(4.5)
        self.assertTrue(a.alive(), "agent died while the server was down\n%s" % a.logs())
        up_ms = harness.now_ms()
        self.s.start()
        # Everything queued arrives: the agent reports an empty queue in a
        # sample taken after the restart.
        def drained():
            pts = self.s.all_points(d, {"metric": "agent_queue_depth", "since": up_ms})
            return any(p["value"] == 0 for p in pts)
        self.wait(drained, 20, "the queue to drain after the restart", a)
        self.stop_agent(a)
        pts = self.s.all_points(d, {"metric": "agent_seq"})
        values = [p["value"] for p in pts]
        self.assert_exactly_once(values, "server restart")
        during = [p for p in pts if down_ms <= p["ts"] <= up_ms]
        self.assertGreaterEqual(len(during), 3, "samples taken while the server was down "
                                "(%d..%d) did not arrive: %r" % (down_ms, up_ms, pts))
        depth = self.s.all_points(d, {"metric": "agent_queue_depth"})
        self.assertGreaterEqual(max(p["value"] for p in depth), 3,
                                "the queue never held the outage's samples")
        log = a.stderr()
        self.assertIn("connection lost", log)
        self.assertRegex(log, r"reconnecting in \d+\.\d{3} s")
        self.assertEqual(log.count("connected to"), 2, a.logs())
        if stop_problem is not None:
            raise stop_problem

    def test_queue_survives_agent_restart(self):
        d, secret = self.new_device()
        self.s.stop()
        # Server down from the start: every sample of the first run stays
        # on disk.
        a = self.agent(d, secret).start()
        time.sleep(3.5)
        self.stop_agent(a)
        queued = [int(x) for x in re.findall(r"sample seq (\d+) queued", a.stderr())]
        self.assertGreaterEqual(len(queued), 2, a.logs())
        self.assertTrue(os.listdir(os.path.join(a.data_dir, "queue")))
        self.s.start()
        a.start()
        self.wait(lambda: set(queued) <= set(self.seq_values(d)), 20,
                  "the first run's samples after the second run connects", a)
        self.wait(lambda: len(self.seq_values(d)) >= len(queued) + 2, 10,
                  "samples of the second run", a)
        self.stop_agent(a)
        values = self.seq_values(d)
        first_run = [v for v in values if v <= max(queued)]
        second_run = [v for v in values if v > max(queued)]
        self.assertEqual(sorted(first_run), queued, "first run: each queued sample once")
        self.assert_exactly_once(second_run, "second run")
        # seq keeps growing across restarts (the second run starts above).
        self.assertGreater(min(second_run), max(queued))

    def test_full_queue_drops_oldest_and_reports(self):
        d, secret = self.new_device()
        self.s.stop()
        # A sample is some 700 bytes: a 4 KiB queue holds about five.
        a = self.agent(d, secret, queue_max_bytes=4096).start()
        self.wait(lambda: "queue full" in a.stderr(), 20, "the queue to overflow", a)
        time.sleep(2)
        self.s.start()
        tel = self.wait(lambda: (lambda t: t if t.get("agent_queue_dropped", {}).get("value", 0)
                                 > 0 else None)(self.telemetry_latest(d)), 20,
                        "agent_queue_dropped > 0 reported", a)
        self.stop_agent(a)
        values = sorted(self.seq_values(d))
        dropped = tel["agent_queue_dropped"]["value"]
        # The oldest went: what arrived is one run of consecutive numbers
        # (the newest ones), each once, and the first samples are missing.
        queued = [int(x) for x in re.findall(r"sample seq (\d+) queued", a.stderr())]
        self.assert_exactly_once(values, "after drops")
        self.assertGreater(values[0], queued[0])
        self.assertGreaterEqual(values[0] - queued[0], dropped)
        self.assertRegex(a.stderr(), r"queue full \(4096 bytes\): dropped the \d+ oldest")

    def test_mqtt_311(self):
        d, secret = self.new_device()
        a = self.agent(d, secret, protocol=4).start()
        self.wait(lambda: "cpu_pct" in self.telemetry_latest(d), 15, "telemetry over 3.1.1", a)
        self.stop_agent(a)
        self.assertIn("v3.1.1", self.s.stderr())

    def test_wrong_secret_retries_and_stops_cleanly(self):
        d, _ = self.new_device()
        a = self.agent(d, "not-the-secret").start()
        self.wait(lambda: len(re.findall(r"refused the connection", a.stderr())) >= 2, 15,
                  "two refused connection attempts", a)
        self.assertFalse(self.s.device(d)["online"])
        self.stop_agent(a)

    def test_second_agent_on_same_data_dir_refused(self):
        d, secret = self.new_device()
        a = self.agent(d, secret).start()
        self.wait(lambda: "started for device" in a.stderr(), 10, "agent start", a)
        b = Agent(self.s, d, secret, self.tmp)  # same dir and config
        b.runs = 10
        b.start()
        rc = b.proc.wait(10)
        self.assertEqual(rc, 1, b.logs())
        self.assertIn("another drover-agent uses this data_dir", b.stderr())
        self.stop_agent(a)


# ---------------------------------------------------------------- command line

class AgentCliTest(unittest.TestCase):

    def test_once_prints_a_sample(self):
        r = harness.run([agent_path(), "--once"], timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        js = json.loads(r.stdout)
        for m in ("cpu_pct", "mem_total_bytes", "mem_used_bytes", "load1", "uptime_s",
                  "net_rx_bytes", "ts"):
            self.assertIn(m, js)
        self.assertFalse(harness.sanitizer_lines(r.stderr), r.stderr)

    def test_help_and_bad_usage(self):
        r = harness.run([agent_path(), "--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("--config", r.stdout)
        r = harness.run([agent_path()])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--config", r.stderr)
        r = harness.run([agent_path(), "--bogus"])
        self.assertEqual(r.returncode, 2)

    def test_bad_config(self):
        tmp = tempfile.mkdtemp(prefix="drover-agent-it-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "a.conf")
        cases = [
            ("server = 127.0.0.1:1\ndevice_id = d\nsecret = s\nflavour = x\n", "flavour"),
            ("server = 127.0.0.1:1\ndevice_id = d\nsecret = s\ntelemetry_interval_s = 0\n",
             "telemetry_interval_s"),
            ("server = 127.0.0.1:1\ndevice_id = d\n", "secret"),
            ("server = nohost\ndevice_id = d\nsecret = s\n", "server"),
            ("server = 127.0.0.1:1\ndevice_id = a/b\nsecret = s\n", "device_id"),
        ]
        for text, word in cases:
            with open(path, "w") as f:
                f.write(text)
            r = harness.run([agent_path(), "--config", path])
            self.assertEqual(r.returncode, 2, (text, r.stderr))
            self.assertIn(word, r.stderr)
        r = harness.run([agent_path(), "--config", os.path.join(tmp, "missing.conf")])
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.conf", r.stderr)


# ---------------------------------------------------------------- twin, commands

class AgentControlTest(ServerTestCase, AgentCase):
    """Desired state and commands through the REST API, one server."""

    def setUp(self):
        super().setUp()
        self.s = self.server
        self.tmp = self.make_tmp()
        self.agents = []
        self.addCleanup(self.kill_agents)

    def start_agent(self, **conf):
        d, secret = self.new_device("agent")
        a = self.agent(d, secret, telemetry_interval_s=60, **conf).start()
        self.wait(lambda: self.s.device(d)["online"], 15, "agent %s online" % d, a)
        return d, a

    def twin(self, d):
        st, js = self.s.api("GET", "/api/v1/devices/%s/twin" % d)
        self.assertEqual(st, 200, js)
        return js

    def put_desired(self, d, state):
        st, js = self.s.api("PUT", "/api/v1/devices/%s/twin/desired" % d, state)
        self.assertEqual(st, 200, js)
        return js["desired_version"]

    def command(self, d, name, params=None, timeout_s=None, wait=15):
        body = {"name": name}
        if params is not None:
            body["params"] = params
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        st, js = self.s.api("POST", "/api/v1/devices/%s/commands" % d, body)
        self.assertEqual(st, 201, js)
        cid = js["id"]
        deadline = time.monotonic() + wait
        while True:
            st, js = self.s.api("GET", "/api/v1/commands/%s?wait=10" % cid, timeout=15)
            self.assertEqual(st, 200, js)
            if js["status"] not in ("queued", "sent") or time.monotonic() > deadline:
                return js

    # -- twin

    def test_desired_state_applied_and_reported(self):
        hook_out = os.path.join(self.tmp, "hook-stdin.json")
        hook = os.path.join(self.tmp, "apply.sh")
        write_script(hook, 'cat > "%s"\necho "$DROVER_DESIRED_VERSION" > "%s.version"\n'
                     % (hook_out, hook_out))
        d, a = self.start_agent(desired_hook=hook)
        v1 = self.put_desired(d, {"fan": "auto", "limits": {"max": 5, "min": 1}})

        def applied(v):
            t = self.twin(d)
            return t if t["reported"].get("$applied_version") == v else None

        t = self.wait(lambda: applied(v1), 15, "desired version %d reported" % v1, a)
        self.assertEqual(t["reported"]["fan"], "auto")
        self.assertEqual(t["reported"]["limits"], {"max": 5, "min": 1})
        self.assertIsNone(t["reported"].get("$apply_error"))
        self.assertEqual(t["delta"], {})
        with open(hook_out) as f:
            self.assertEqual(json.load(f), {"fan": "auto", "limits": {"max": 5, "min": 1}})
        with open(hook_out + ".version") as f:
            self.assertEqual(int(f.read()), v1)
        with open(os.path.join(a.data_dir, "applied.json")) as f:
            self.assertEqual(json.load(f), {"version": v1, "state": t["desired"]})

        # A key that leaves the desired state leaves the reported state.
        v2 = self.put_desired(d, {"fan": "off", "limits": {"max": 7}})
        t = self.wait(lambda: applied(v2), 15, "desired version %d reported" % v2, a)
        self.assertEqual(t["reported"]["fan"], "off")
        self.assertEqual(t["reported"]["limits"], {"max": 7})
        self.assertEqual(t["delta"], {})

        # Changed while the agent is stopped: applied after it comes back.
        self.stop_agent(a)
        v3 = self.put_desired(d, {"fan": "high"})
        a.start()
        t = self.wait(lambda: applied(v3), 15, "desired version %d after restart" % v3, a)
        self.assertEqual(t["reported"]["fan"], "high")
        self.assertNotIn("limits", t["reported"])
        self.stop_agent(a)

    def test_desired_hook_failure_reported(self):
        hook = os.path.join(self.tmp, "fail.sh")
        write_script(hook, 'echo "cannot set fan" >&2\nexit 3\n')
        d, a = self.start_agent(desired_hook=hook)
        v = self.put_desired(d, {"fan": "turbo"})
        t = self.wait(lambda: (lambda t: t if t["reported"].get("$apply_error_version") == v
                               else None)(self.twin(d)), 15, "the hook's error reported", a)
        err = t["reported"]["$apply_error"]
        self.assertIn("exit code 3", err)
        self.assertIn("cannot set fan", err)
        self.assertNotEqual(t["reported"].get("$applied_version"), v)
        self.assertNotIn("fan", t["reported"])
        self.assertEqual(t["delta"], {"fan": "turbo"})
        self.stop_agent(a)

    # -- commands

    def test_ping(self):
        d, a = self.start_agent()
        before = harness.now_ms()
        js = self.command(d, "ping")
        self.assertEqual(js["status"], "succeeded", js)
        self.assertIs(js["result"]["pong"], True)
        self.assertGreaterEqual(js["result"]["ts"], before - 5000)
        self.stop_agent(a)

    def test_get_config_hides_secret(self):
        d, a = self.start_agent()
        js = self.command(d, "get-config")
        self.assertEqual(js["status"], "succeeded", js)
        cfg = js["result"]
        self.assertEqual(cfg["device_id"], d)
        self.assertEqual(cfg["data_dir"], a.data_dir)
        self.assertNotIn("secret", cfg)
        with open(a.config_path) as f:
            secret = re.search(r"^secret = (.*)$", f.read(), re.M).group(1)
        self.assertNotIn(secret, json.dumps(js))
        self.stop_agent(a)

    def test_user_command_with_args(self):
        cmds = os.path.join(self.tmp, "commands")
        os.makedirs(cmds)
        write_script(os.path.join(cmds, "greet"),
                     'echo "hello $1 [$2] $#"\necho "id=$DROVER_COMMAND_ID" >&2\n')
        write_script(os.path.join(cmds, "fail"), 'echo "no good"\nexit 2\n')
        write_script(os.path.join(cmds, "slow"), 'sleep 30\n')
        d, a = self.start_agent(commands_dir=cmds, command_timeout_s=1)
        js = self.command(d, "greet", {"args": ["world", "two words; $(rm -rf /)"]})
        self.assertEqual(js["status"], "succeeded", js)
        out = js["result"]
        self.assertEqual(out["exit_code"], 0)
        self.assertEqual(out["stdout"],
                         "hello world [two words; $(rm -rf /)] 2\nid=%s\n" % js["id"])
        self.assertIs(out["truncated"], False)

        js = self.command(d, "fail")
        self.assertEqual(js["status"], "failed", js)
        self.assertEqual(js["result"]["exit_code"], 2)
        self.assertEqual(js["result"]["stdout"], "no good\n")

        t0 = time.monotonic()
        js = self.command(d, "slow")
        self.assertEqual(js["status"], "failed", js)
        self.assertIs(js["result"]["timed_out"], True)
        self.assertLess(time.monotonic() - t0, 10)

        js = self.command(d, "greet", {"args": "not a list"})
        self.assertEqual(js["status"], "rejected", js)
        self.stop_agent(a)

    def test_disallowed_commands_rejected(self):
        cmds = os.path.join(self.tmp, "commands")
        os.makedirs(cmds)
        os.symlink("/bin/sh", os.path.join(cmds, "sh"))          # escapes the directory
        write_script(os.path.join(cmds, "noexec"), "exit 0\n", mode=0o644)
        os.makedirs(os.path.join(cmds, "adir"))
        marker = os.path.join(self.tmp, "should-not-exist")
        d, a = self.start_agent(commands_dir=cmds)
        # (names with '/' never get here: the server refuses them with 400)
        for name in ("rm", "sh", "noexec", "adir", "..", ".hidden", "reboot"):
            js = self.command(d, name, {"args": ["-c", "touch %s" % marker]})
            self.assertEqual(js["status"], "rejected", (name, js))
        self.assertFalse(os.path.exists(marker))
        self.assertIn("not an executable file", a.stderr())
        self.stop_agent(a)

    def test_reboot_runs_hook(self):
        marker = os.path.join(self.tmp, "rebooted")
        hook = os.path.join(self.tmp, "reboot.sh")
        write_script(hook, 'echo "$DROVER_COMMAND_NAME" > "%s"\necho "rebooting"\n' % marker)
        d, a = self.start_agent(reboot_hook=hook)
        js = self.command(d, "reboot")
        self.assertEqual(js["status"], "succeeded", js)
        self.assertEqual(js["result"]["stdout"], "rebooting\n")
        with open(marker) as f:
            self.assertEqual(f.read(), "reboot\n")
        self.assertTrue(a.alive())
        self.stop_agent(a)

    def test_command_while_offline_runs_on_reconnect(self):
        d, a = self.start_agent()
        self.stop_agent(a)
        self.wait(lambda: not self.s.device(d)["online"], 5, "device offline")
        st, js = self.s.api("POST", "/api/v1/devices/%s/commands" % d,
                            {"name": "ping", "timeout_s": 60})
        self.assertEqual(st, 201, js)
        cid = js["id"]
        a.start()
        js = self.wait(lambda: (lambda j: j if j["status"] == "succeeded" else None)(
            self.s.api("GET", "/api/v1/commands/%s?wait=5" % cid, timeout=10)[1]), 20,
            "queued ping answered after reconnect", a)
        self.assertIs(js["result"]["pong"], True)
        self.stop_agent(a)


if __name__ == "__main__":
    harness.main()
