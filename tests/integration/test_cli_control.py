"""The drover CLI's control commands against a live droverd: the device
twin (twin get/set/patch), commands (cmd send/show/list, with --wait), bulk
operations (bulk cmd/twin, with --wait) and jobs (job show).

Devices are simulated with Eclipse Paho (python3-paho-mqtt 1.6): a
Responder subscribes to devices/ID/commands/+ and answers each command on
devices/ID/commands/CID/result, by default with
{"status": "succeeded", "output": {"ok": true}}.

Run by hand:
  DROVER_BUILD_DIR=<build dir> /usr/bin/python3 tests/integration/test_cli_control.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import uid  # noqa: E402


class Responder:
    """A device that answers its commands. answers maps a command name to
    the status to answer ("succeeded" for any other name). received holds
    every command message, in arrival order."""

    def __init__(self, test, device_id, secret, answers=None):
        self.device_id = device_id
        self.answers = answers or {}
        self.received = []
        self.lock = threading.Lock()
        self.client = test.device_client(device_id, secret)
        inner = self.client.c.on_message

        def on_message(client, userdata, msg):
            inner(client, userdata, msg)
            parts = msg.topic.split("/")
            if len(parts) != 4 or parts[2] != "commands":
                return
            try:
                cmd = json.loads(msg.payload)
            except ValueError:
                return
            with self.lock:
                self.received.append(cmd)
            status = self.answers.get(cmd.get("name"), "succeeded")
            out = {"ok": status == "succeeded", "params": cmd.get("params")}
            if status == "succeeded":
                out = {"ok": True}
            # Called on the client's own loop thread: paho queues the packet.
            client.publish(msg.topic + "/result",
                           json.dumps({"status": status, "output": out}), qos=1)

        self.client.c.on_message = on_message
        self.client.connect_ok()
        codes = self.client.subscribe("devices/%s/commands/+" % device_id, qos=1)
        if codes != [1]:
            raise AssertionError("SUBACK %r for the commands filter" % codes)

    def commands(self):
        with self.lock:
            return list(self.received)


class CliControlTest(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = harness.cli_path()
        cls.cwd = tempfile.mkdtemp(prefix="drover-clictl-")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.cwd, ignore_errors=True)

    # -- running the CLI ------------------------------------------------

    def cli(self, *args, input=None, timeout=40):
        argv = [self.binary, "--server", self.server.base_url, "--token", self.server.token]
        argv += list(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
        env["HOME"] = self.cwd  # no config file from the real home
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=env, cwd=self.cwd, input=input)
        except subprocess.TimeoutExpired as e:
            self.fail("drover timed out after %ss: %s\nstdout: %s\nstderr: %s"
                      % (timeout, " ".join(args), e.stdout, e.stderr))

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

    def devices(self, n, prefix, tags=None):
        return [self.new_device(prefix, tags) for _ in range(n)]

    # -- twin -----------------------------------------------------------

    def test_twin_set_patch_get_round_trip(self):
        d, secret = self.new_device("twin")
        t = self.js("twin", "get", d)
        self.assertEqual(t["desired"], {})
        self.assertEqual(t["desired_version"], 0)
        self.assertIsNone(t["desired_at"])

        t = self.js("twin", "set", d, '{"interval": 30, "mode": {"a": 1, "b": 2}}')
        self.assertEqual(t["desired"], {"interval": 30, "mode": {"a": 1, "b": 2}})
        self.assertEqual(t["desired_version"], 1)
        self.assertIsInstance(t["desired_at"], int)

        # A merge patch: null removes, nested objects merge.
        t = self.js("twin", "patch", d, '{"mode": {"a": null, "c": 3}, "x": 0.1}',
                    "--if-match", "1")
        want = {"interval": 30, "mode": {"b": 2, "c": 3}, "x": 0.1}
        self.assertEqual(t["desired"], want)
        self.assertEqual(t["desired_version"], 2)

        got = self.js("twin", "get", d)
        self.assertEqual(got["desired"], want)
        self.assertEqual(got["desired_version"], 2)
        self.assertEqual(got["delta"], want)
        st, api = self.server.api("GET", "/api/v1/devices/%s/twin" % d)
        self.assertEqual(st, 200)
        self.assertEqual(api, got)

        # The device gets the whole desired state and reports part of it.
        c = self.device_client(d, secret)
        c.connect_ok()
        c.subscribe("devices/%s/twin/desired" % d)
        m = c.wait_message("devices/%s/twin/desired" % d, timeout=5)
        self.assertIsNotNone(m, "no desired state delivered on subscribe")
        self.assertEqual(json.loads(m.payload), {"version": 2, "state": want})
        self.assertTrue(c.publish("devices/%s/twin/reported" % d,
                                  {"interval": 30, "mode": {"b": 2, "c": 3}}))
        got = self.js("twin", "get", d)
        self.assertEqual(got["reported_version"], 1)
        self.assertEqual(got["delta"], {"x": 0.1})

        r = self.ok("twin", "get", d)
        self.assertIn("desired (version 2, changed ", r.stdout)
        self.assertIn("reported (version 1, changed ", r.stdout)
        self.assertIn('"x": 0.1', r.stdout)

        # A stale --if-match changes nothing and says why.
        r = self.expect(1, "twin", "patch", d, '{"y": 1}', "--if-match", "1")
        self.assertIn("desired state changed since version 1", r.stderr)
        self.assertEqual(self.js("twin", "get", d)["desired_version"], 2)

        # set replaces the whole document; input from stdin and from a file.
        t = self.js("twin", "set", d, "-", input='{"only": true}\n')
        self.assertEqual(t["desired"], {"only": True})
        self.assertEqual(t["desired_version"], 3)
        path = os.path.join(self.cwd, "patch.json")
        with open(path, "w") as f:
            f.write('{"more": [1, 2]}')
        t = self.js("twin", "patch", d, "@" + path, "--if-match", "3")
        self.assertEqual(t["desired"], {"only": True, "more": [1, 2]})
        m = c.wait_message("devices/%s/twin/desired" % d, timeout=5,
                           start=len(c.messages) - 1)
        self.assertIsNotNone(m)
        c.disconnect()

    def test_twin_usage_and_server_errors(self):
        d, _ = self.new_device("twine")
        for args in (("twin", "set", d, "[1, 2]"), ("twin", "set", d, "{"),
                     ("twin", "patch", d, "{}", "--if-match", "x"),
                     ("twin", "patch", d, "{}", "--if-match", "-1"),
                     ("twin", "set", d, "@/no/such/file"),
                     ("twin", "get", "bad id")):
            r = self.expect(64, *args)
            self.assertTrue(r.stderr.startswith("drover: "), r.stderr)
        r = self.expect(1, "twin", "get", "no-such-device-x")
        self.assertIn("404", r.stderr)
        r = self.expect(1, "twin", "set", "no-such-device-x", "{}")
        self.assertIn("404", r.stderr)

    # -- commands -------------------------------------------------------

    def test_cmd_send_wait_succeeds(self):
        d, secret = self.new_device("cmd")
        dev = Responder(self, d, secret)
        r = self.ok("cmd", "send", d, "ping", "--param", "n=5", "--param", "mode=fast",
                    "--wait", "10")
        self.assertIn("succeeded", r.stdout)
        self.assertIn('"ok": true', r.stdout)
        got = dev.commands()
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0]["name"], "ping")
        self.assertEqual(got[0]["params"], {"n": 5, "mode": "fast"})

        c = self.js("cmd", "send", d, "ls", "--params", '{"args": ["-l"], "n": 1}',
                    "--param", "n=2", "--param", "flag=true", "--wait=10")
        self.assertEqual(c["status"], "succeeded")
        self.assertEqual(c["result"], {"ok": True})
        self.assertEqual(c["device"], d)
        self.assertEqual(dev.commands()[-1]["params"], {"args": ["-l"], "n": 2, "flag": True})

        shown = self.js("cmd", "show", c["id"])
        self.assertEqual(shown["id"], c["id"])
        self.assertEqual(shown["status"], "succeeded")
        r = self.ok("cmd", "show", c["id"])
        self.assertIn(c["id"], r.stdout)

        listed = self.js("cmd", "list", d)
        ids = [x["id"] for x in listed["commands"]]
        self.assertIn(c["id"], ids)
        self.assertEqual(len(ids), 2)
        self.assertEqual(ids[0], c["id"], "newest first")
        r = self.ok("cmd", "list", d)
        self.assertIn("ls", r.stdout)
        self.assertIn("ping", r.stdout)
        # One per page, every page with --all.
        page = self.js("cmd", "list", d, "--limit", "1")
        self.assertEqual(len(page["commands"]), 1)
        self.assertIsInstance(page["next"], str)
        allp = self.js("cmd", "list", d, "--limit", "1", "--all")
        self.assertEqual([x["id"] for x in allp["commands"]], ids)
        self.assertIsNone(allp["next"])

    def test_cmd_failed_and_rejected_exit_1(self):
        d, secret = self.new_device("cmdf")
        Responder(self, d, secret, answers={"boom": "failed", "nope": "rejected"})
        r = self.expect(1, "cmd", "send", d, "boom", "--wait", "10")
        self.assertIn("failed", r.stdout)
        self.assertIn("failed", r.stderr)
        c = self.js("cmd", "send", d, "nope", "--wait", "10", rc=1)
        self.assertEqual(c["status"], "rejected")

    def test_cmd_offline_device_expires(self):
        d, _ = self.new_device("cmdoff")
        t0 = time.monotonic()
        r = self.expect(1, "cmd", "send", d, "ping", "--timeout", "1", "--wait", "3")
        took = time.monotonic() - t0
        self.assertIn("expired", r.stdout)
        self.assertIn("expired", r.stderr)
        self.assertLess(took, 6.0, "the long poll should end when the command expires")
        c = self.js("cmd", "list", d)["commands"][0]
        self.assertEqual(c["status"], "expired")
        self.assertIsNone(c["sent_at"])

    def test_cmd_send_without_wait_then_show_wait(self):
        d, secret = self.new_device("cmdq")
        c = self.js("cmd", "send", d, "ping")
        self.assertEqual(c["status"], "queued")
        # The device comes online later and gets it on subscribe.
        dev = Responder(self, d, secret)
        c = self.js("cmd", "show", c["id"], "--wait", "10")
        self.assertEqual(c["status"], "succeeded")
        self.assertEqual(len(dev.commands()), 1)
        # A wait that runs out before the command ends: exit 1, still sent.
        d2, _ = self.new_device("cmdq2")
        c2 = self.js("cmd", "send", d2, "ping", "--timeout", "60")
        r = self.expect(1, "cmd", "show", c2["id"], "--wait", "1")
        self.assertIn("still queued", r.stderr)

    def test_cmd_usage_errors(self):
        d, _ = self.new_device("cmdu")
        for args in (("cmd", "send", d, "bad name"),
                     ("cmd", "send", d, "x", "--param", "novalue"),
                     ("cmd", "send", d, "x", "--param", "a=1", "--param", "a=2"),
                     ("cmd", "send", d, "x", "--params", "[1]"),
                     ("cmd", "send", d, "x", "--timeout", "0"),
                     ("cmd", "send", d, "x", "--timeout", "1.5"),
                     ("cmd", "send", d, "x", "--wait=soon"),
                     ("cmd", "list", d, "--limit", "0"),
                     ("cmd", "show", "bad/id")):
            self.expect(64, *args)
        self.assertEqual(self.js("cmd", "list", d)["commands"], [])
        r = self.expect(1, "cmd", "show", "cmd_0000")
        self.assertIn("404", r.stderr)

    # -- bulk operations and jobs -----------------------------------------

    def test_bulk_cmd_by_tag_wait_all_succeed(self):
        fleet = uid("fleet")
        devs = self.devices(5, "bulk", {"fleet": fleet})
        sims = [Responder(self, d, s) for d, s in devs]
        other, osecret = self.new_device("bulkother", {"fleet": "elsewhere"})
        bystander = Responder(self, other, osecret)

        r = self.expect(0, "bulk", "cmd", "--tag", "fleet=" + fleet, "ping",
                        "--param", "n=1", "--wait", "30", "--json")
        job = json.loads(r.stdout)
        self.assertEqual(job["status"], "done")
        self.assertEqual(job["kind"], "command")
        self.assertEqual(job["total"], 5)
        self.assertEqual(job["counts"], {"succeeded": 5})
        self.assertNotIn("devices", job)
        self.assertIn("%s: 5/5 done (succeeded 5)" % job["id"], r.stderr)
        for s in sims:
            self.assertEqual([(c["name"], c["params"]) for c in s.commands()],
                             [("ping", {"n": 1})])
        self.assertEqual(bystander.commands(), [])

        shown = self.js("job", "show", job["id"])
        self.assertEqual(shown["counts"], {"succeeded": 5})
        self.assertEqual(sorted(x["device"] for x in shown["devices"]),
                         sorted(d for d, _ in devs))
        self.assertTrue(all(x["status"] == "succeeded" for x in shown["devices"]))
        r = self.ok("job", "show", job["id"])
        self.assertIn("command:    ping", r.stdout)
        self.assertIn("succeeded  5", r.stdout)
        for d, _ in devs:
            self.assertIn(d, r.stdout)
        # Paging through the devices.
        page = self.js("job", "show", job["id"], "--limit", "2")
        self.assertEqual(len(page["devices"]), 2)
        self.assertIsInstance(page["next"], str)
        allp = self.js("job", "show", job["id"], "--limit", "2", "--all")
        self.assertEqual(len(allp["devices"]), 5)
        self.assertIsNone(allp["next"])

        # Each device's command carries the job.
        cmd = self.js("cmd", "list", devs[0][0])["commands"][0]
        self.assertEqual(cmd.get("job"), job["id"])

    def test_bulk_cmd_some_fail_exit_1(self):
        devs = self.devices(2, "bulkf")
        Responder(self, devs[0][0], devs[0][1])
        Responder(self, devs[1][0], devs[1][1], answers={"ping": "failed"})
        ids = ",".join(d for d, _ in devs)
        r = self.expect(1, "bulk", "cmd", "--ids", ids, "ping", "--wait", "30")
        self.assertIn("2/2 done (succeeded 1, failed 1)", r.stderr)
        self.assertIn("1 of 2 devices did not succeed", r.stderr)
        self.assertIn("succeeded  1", r.stdout)

    def test_bulk_cmd_without_wait(self):
        devs = self.devices(2, "bulkn")
        ids = ",".join(d for d, _ in devs)
        job = self.js("bulk", "cmd", "--ids", ids, "ping", "--timeout", "1")
        self.assertEqual(job["total"], 2)
        self.assertIn(job["status"], ("running", "done"))
        # Nobody answers: both commands expire and the job ends.
        done = harness.wait_for(
            lambda: (lambda j: j if j["status"] == "done" else None)(
                self.js("job", "show", job["id"])),
            timeout=10, msg="the job to end")
        self.assertEqual(done["counts"], {"expired": 2})

    def test_bulk_twin(self):
        tag = uid("tw")
        devs = self.devices(3, "bulkt", {"group": tag})
        r = self.expect(0, "bulk", "twin", "--tag", "group=" + tag, '{"fw": "2.0"}',
                        "--wait", "20", "--json")
        job = json.loads(r.stdout)
        self.assertEqual(job["kind"], "twin")
        self.assertEqual(job["status"], "done")
        self.assertEqual(job["counts"], {"applied": 3})
        self.assertIn("3/3 done (applied 3)", r.stderr)
        for d, _ in devs:
            self.assertEqual(self.js("twin", "get", d)["desired"], {"fw": "2.0"})

        # --ids, a patch from stdin, followed with `job show`.
        one = devs[0][0]
        job = self.js("bulk", "twin", "--ids", one, "-", input='{"fw": null, "x": 1}')
        self.assertEqual(job["total"], 1)
        done = harness.wait_for(
            lambda: (lambda j: j if j["status"] == "done" else None)(
                self.js("job", "show", job["id"])),
            timeout=10, msg="the twin job to end")
        self.assertEqual(done["devices"], [{"device": one, "status": "applied"}])
        self.assertEqual(self.js("twin", "get", one)["desired"], {"x": 1})
        r = self.ok("job", "show", job["id"])
        self.assertIn("kind:       twin", r.stdout)
        self.assertIn("applied", r.stdout)

    def test_bulk_usage_and_server_errors(self):
        d, _ = self.new_device("bulku")
        for args in (("bulk", "cmd", "ping"),
                     ("bulk", "cmd", "--tag", "a=b", "--all-devices", "ping"),
                     ("bulk", "cmd", "--ids", "a,,b", "ping"),
                     ("bulk", "cmd", "--ids", "a,a", "ping"),
                     ("bulk", "cmd", "--tag", "novalue", "ping"),
                     ("bulk", "twin", "--ids", d, "[1]"),
                     ("bulk", "twin", "--ids", d),
                     ("job", "show", "bad id")):
            r = self.expect(64, *args)
            self.assertIn("usage: drover ", r.stderr)
        r = self.expect(1, "bulk", "cmd", "--tag", "nobody=" + uid("x"), "ping")
        self.assertIn("404", r.stderr)
        r = self.expect(1, "bulk", "twin", "--ids", d + ",no-such-dev-q", "{}")
        self.assertIn("no-such-dev-q", r.stderr)
        r = self.expect(1, "job", "show", "job_0000")
        self.assertIn("404", r.stderr)

    def test_help_lists_control_commands(self):
        r = self.ok("help")
        for c in ("twin get", "twin set", "twin patch", "cmd send", "cmd show", "cmd list",
                  "bulk cmd", "bulk twin", "job show"):
            self.assertIn(c, r.stdout)
        r = self.ok("help", "bulk", "cmd")
        self.assertIn("(--tag K=V | --ids ID,... | --all-devices)", r.stdout)


class LongPollTest(harness.ServerTestCase):
    """GET /api/v1/commands/{id}?wait= when the answer is known at once: the
    command already ended, or there is no such command. `drover cmd send
    --wait` hits the first case whenever the device answers before the
    long poll arrives. (Its own server: a crash here must not take the CLI
    tests down with it.)"""

    def test_wait_on_ended_command_answers_at_once(self):
        d, _ = self.new_device("lp")
        st, c = self.server.api("POST", "/api/v1/devices/%s/commands" % d,
                                {"name": "ping", "timeout_s": 1})
        self.assertEqual(st, 201, c)
        harness.wait_for(lambda: self.server.api(
            "GET", "/api/v1/commands/" + c["id"])[1]["status"] == "expired",
            timeout=10, msg="the command to expire")
        t0 = time.monotonic()
        st, got = self.server.api("GET", "/api/v1/commands/%s?wait=5" % c["id"])
        self.assertEqual(st, 200, got)
        self.assertEqual(got["status"], "expired")
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_wait_on_unknown_command_is_404(self):
        st, js = self.server.api("GET", "/api/v1/commands/cmd_nosuch?wait=5")
        self.assertError(st, js, 404, "not_found")


if __name__ == "__main__":
    harness.main()
