"""Commands: delivery to online and offline devices at QoS 1, the state
machine queued -> sent -> succeeded/failed/rejected/expired, the ?wait long
poll, refused results (MQTT 5 PUBACK 0x87 / 0x83 / 0x99, nothing changes),
history paging, request validation, and commands across a restart."""

import json
import os
import sys
import threading
import time
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw  # noqa: E402
from harness import HOST, now_ms  # noqa: E402

RC5_SUCCESS = 0x00
RC5_IMPL_SPECIFIC = 0x83
RC5_NOT_AUTHORIZED = 0x87
RC5_PAYLOAD_FORMAT_INVALID = 0x99
CLOCK_SLACK_MS = 2000
MAX_COMMAND_TIMEOUT_S = 2592000
FINAL = ("succeeded", "failed", "rejected", "expired")


class CommandsTest(harness.ServerTestCase):

    # -- helpers ----------------------------------------------------------

    def cmd_filter(self, d):
        return "devices/%s/commands/+" % d

    def cmd_topic(self, d, cid):
        return "devices/%s/commands/%s" % (d, cid)

    def result_topic(self, d, cid):
        return "devices/%s/commands/%s/result" % (d, cid)

    def post(self, d, body):
        return self.server.api("POST", "/api/v1/devices/%s/commands" % d, body)

    def create(self, d, name="reboot", params=None, timeout_s=None):
        body = {"name": name}
        if params is not None:
            body["params"] = params
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        st, hdrs, raw = self.server.request("POST", "/api/v1/devices/%s/commands" % d, body)
        js = json.loads(raw) if raw else None
        self.assertEqual(st, 201, "POST command %r: %r" % (body, js))
        self.assertEqual(hdrs.get("location"), "/api/v1/commands/%s" % js["id"])
        self.assertEqual(js["device"], d)
        self.assertEqual(js["name"], name)
        self.assertEqual(js["params"], params if params is not None else {})
        self.assertIn(js["status"], ("queued", "sent"))
        self.assertIsNone(js["result"])
        self.assertIsNone(js["finished_at"])
        return js

    def get(self, cid, query=""):
        st, js = self.server.api("GET", "/api/v1/commands/%s%s" % (cid, query))
        self.assertEqual(st, 200, "GET command %s%s: %r" % (cid, query, js))
        return js

    def commands_online_device(self, d, secret, version=4):
        c = self.device_client(d, secret, version=version)
        c.connect_ok()
        self.assertEqual(c.subscribe(self.cmd_filter(d), 1), [1])
        return c

    def cmd_msgs(self, c, d):
        pre = "devices/%s/commands/" % d
        return [m for m in c.messages if m.topic.startswith(pre)]

    def wait_cmd(self, c, d, cid, timeout=5.0):
        m = c.wait_message(self.cmd_topic(d, cid), timeout)
        self.assertIsNotNone(m, "command %s not delivered within %.0fs (got %r)"
                             % (cid, timeout, [x.topic for x in c.messages]))
        return m

    def raw_device(self, d, secret, version):
        c, _, _ = mqttraw.connect_ok(HOST, self.server.mqtt_port, d, d, secret, version=version)
        self.addCleanup(c.close)
        return c

    def raw_take_command(self, c, d, cid, timeout=5.0):
        """Reads PUBLISHes until the one for cid; acknowledges each."""
        deadline = time.monotonic() + timeout
        while True:
            p = c.read_type(mqttraw.PUBLISH, max(0.0, deadline - time.monotonic()))
            pub = mqttraw.parse_publish(p, c.version)
            if pub["qos"] == 1:
                c.send(mqttraw.puback(pub["packet_id"], c.version))
            if pub["topic"] == self.cmd_topic(d, cid):
                return pub

    # -- delivery and results ----------------------------------------------

    def test_online_delivery_and_success(self):
        for version in (4, 5):
            d, secret = self.new_device("on%d" % version)
            c = self.commands_online_device(d, secret, version)
            t0 = now_ms()
            cmd = self.create(d, "reboot", {"delay": 5, "mode": {"hard": False}}, timeout_s=60)
            cid = cmd["id"]
            self.assertTrue(cid)
            self.assertTrue(t0 - CLOCK_SLACK_MS <= cmd["created_at"] <= now_ms() + CLOCK_SLACK_MS)
            self.assertEqual(cmd["expires_at"], cmd["created_at"] + 60000)
            m = self.wait_cmd(c, d, cid)
            self.assertEqual(m.qos, 1, "commands are delivered at QoS 1")
            js = json.loads(m.payload)
            self.assertEqual(js, {"id": cid, "name": "reboot",
                                  "params": {"delay": 5, "mode": {"hard": False}},
                                  "expires_at": cmd["expires_at"]})
            got = self.get(cid)
            self.assertEqual(got["status"], "sent")
            self.assertIsNotNone(got["sent_at"])
            self.assertGreaterEqual(got["sent_at"], cmd["created_at"])
            self.assertIsNone(got["finished_at"])
            self.assertTrue(c.publish(self.result_topic(d, cid),
                                      {"status": "succeeded", "output": {"uptime": 12,
                                                                         "log": ["a", "b"]}},
                                      qos=1), "no PUBACK for the result")
            got = self.get(cid)  # the PUBACK means stored
            self.assertEqual(got["status"], "succeeded")
            self.assertEqual(got["result"], {"uptime": 12, "log": ["a", "b"]})
            self.assertIsNotNone(got["finished_at"])
            self.assertGreaterEqual(got["finished_at"], got["sent_at"])
            self.assertEqual(got["device"], d)
            self.assertEqual(got["params"], {"delay": 5, "mode": {"hard": False}})
            self.assertEqual(len(self.cmd_msgs(c, d)), 1, "delivered once")
            c.disconnect()

    def test_wait_returns_when_result_lands(self):
        d, secret = self.new_device("wait")
        c = self.commands_online_device(d, secret)
        cid = self.create(d, "probe")["id"]
        self.wait_cmd(c, d, cid)
        box = {}

        def poll():
            t = time.monotonic()
            box["resp"] = self.server.api("GET", "/api/v1/commands/%s?wait=5" % cid,
                                          timeout=15)
            box["took"] = time.monotonic() - t

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        answered = time.monotonic()
        self.assertTrue(c.publish(self.result_topic(d, cid), {"status": "succeeded",
                                                              "output": "pong"}, qos=1))
        th.join(10)
        self.assertFalse(th.is_alive(), "?wait=5 did not return")
        after = time.monotonic() - answered
        st, js = box["resp"]
        self.assertEqual(st, 200, js)
        self.assertEqual(js["status"], "succeeded")
        self.assertEqual(js["result"], "pong")
        sys.stderr.write("\n  ?wait=5 returned %.3fs after the result was published "
                         "(%.3fs in all)\n" % (after, box["took"]))
        self.assertGreaterEqual(box["took"], 0.4, "?wait returned before the result existed")
        self.assertLess(after, 1.5, "?wait=5 must return as soon as the result lands")
        # On a finished command ?wait answers at once.
        t = time.monotonic()
        self.assertEqual(self.get(cid, "?wait=5")["status"], "succeeded")
        self.assertLess(time.monotonic() - t, 1.0)
        c.disconnect()

    def test_wait_times_out_with_current_state(self):
        d, _ = self.new_device("waitto")
        cid = self.create(d, "slow")["id"]
        t = time.monotonic()
        js = self.get(cid, "?wait=1")
        took = time.monotonic() - t
        self.assertEqual(js["status"], "queued")
        self.assertTrue(0.8 <= took < 3.0, "?wait=1 took %.2fs" % took)
        for q in ("?wait=-1", "?wait=x"):
            st, js = self.server.api("GET", "/api/v1/commands/%s%s" % (cid, q))
            self.assertError(st, js, 400, "bad_request")
        st, js = self.server.api("GET", "/api/v1/commands/cmd_nope?wait=1")
        self.assertError(st, js, 404, "not_found")

    def test_failed_and_rejected(self):
        d, secret = self.new_device("fr")
        c = self.commands_online_device(d, secret, 5)
        c1 = self.create(d, "flash", {"url": "http://x"})["id"]
        c2 = self.create(d, "dance")["id"]
        self.wait_cmd(c, d, c1)
        self.wait_cmd(c, d, c2)
        self.assertTrue(c.publish(self.result_topic(d, c1),
                                  {"status": "failed", "output": {"error": "disk full"}}, qos=1))
        self.assertTrue(c.publish(self.result_topic(d, c2), {"status": "rejected"}, qos=1))
        g1, g2 = self.get(c1), self.get(c2)
        self.assertEqual((g1["status"], g1["result"]), ("failed", {"error": "disk full"}))
        self.assertEqual((g2["status"], g2["result"]), ("rejected", None))
        self.assertIsNotNone(g1["finished_at"])
        self.assertIsNotNone(g2["finished_at"])
        c.disconnect()

    def test_offline_queued_then_delivered(self):
        d, secret = self.new_device("queue")
        a = self.create(d, "first", {"n": 1})
        b = self.create(d, "second", {"n": 2})
        for x in (a, b):
            self.assertEqual(x["status"], "queued")
            self.assertIsNone(x["sent_at"])
        time.sleep(0.3)
        for x in (a, b):
            got = self.get(x["id"])
            self.assertEqual((got["status"], got["sent_at"]), ("queued", None))
        # Connecting alone does not deliver; the SUBSCRIBE does.
        c = self.device_client(d, secret)
        c.connect_ok()
        time.sleep(0.3)
        self.assertEqual(self.get(a["id"])["status"], "queued")
        self.assertEqual(c.subscribe(self.cmd_filter(d), 1), [1])
        self.wait_cmd(c, d, a["id"])
        self.wait_cmd(c, d, b["id"])
        msgs = self.cmd_msgs(c, d)
        self.assertEqual([json.loads(m.payload)["name"] for m in msgs], ["first", "second"],
                         "queued commands are delivered once each, in creation order")
        for x in (a, b):
            got = self.get(x["id"])
            self.assertEqual(got["status"], "sent")
            self.assertIsNotNone(got["sent_at"])
        self.assertTrue(c.publish(self.result_topic(d, a["id"]), {"status": "succeeded"}, qos=1))
        self.assertEqual(self.get(a["id"])["status"], "succeeded")
        c.disconnect()

    def test_expired_never_delivered(self):
        d, secret = self.new_device("exp")
        t0 = time.monotonic()
        cmd = self.create(d, "late", timeout_s=1)
        cid = cmd["id"]
        self.assertEqual(cmd["expires_at"], cmd["created_at"] + 1000)
        # A ?wait on it ends when it expires.
        js = self.get(cid, "?wait=5")
        self.assertEqual(js["status"], "expired")
        self.assertLess(time.monotonic() - t0, 4.0)
        left = 2.5 - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)  # the device stays offline for 2.5 s in all
        c = self.device_client(d, secret, version=5)
        c.connect_ok()
        self.assertEqual(c.subscribe(self.cmd_filter(d), 1), [1])
        m = c.wait_message(None, 1.5)
        self.assertIsNone(m, "an expired command was delivered: %r" % (
            (m.topic, m.payload) if m else None,))
        got = self.get(cid)
        self.assertEqual(got["status"], "expired")
        self.assertIsNone(got["sent_at"])
        self.assertIsNone(got["result"])
        self.assertIsNotNone(got["finished_at"])
        self.assertGreaterEqual(got["finished_at"], got["expires_at"])
        c.disconnect()

    def test_expired_not_delivered_on_subscribe(self):
        """SUBSCRIBE just after expires_at, likely before any periodic
        expiry pass has run: the delivery path itself must check."""
        d, secret = self.new_device("exp2")
        c = self.device_client(d, secret)
        c.connect_ok()  # connected, not subscribed: nothing is offered yet
        cmd = self.create(d, "edge", timeout_s=1)
        self.assertEqual(cmd["status"], "queued")
        while now_ms() < cmd["expires_at"] + 15:
            time.sleep(0.002)
        self.assertEqual(c.subscribe(self.cmd_filter(d), 1), [1])
        m = c.wait_message(None, 1.0)
        self.assertIsNone(m, "a command was delivered after its expires_at: %r" % (
            (m.topic, m.payload) if m else None,))
        harness.wait_for(lambda: self.get(cmd["id"])["status"] == "expired", 3,
                         msg="expired status")
        c.disconnect()

    def test_sent_command_expires_without_result(self):
        d, secret = self.new_device("sexp")
        c = self.commands_online_device(d, secret)
        cid = self.create(d, "hang", timeout_s=1)["id"]
        self.wait_cmd(c, d, cid)
        self.assertEqual(self.get(cid)["status"], "sent")
        harness.wait_for(lambda: self.get(cid)["status"] == "expired", 4,
                         msg="a sent command without a result expires")
        # A late result is refused (already ended) and changes nothing.
        self.assertTrue(c.publish(self.result_topic(d, cid), {"status": "succeeded"}, qos=1))
        got = self.get(cid)
        self.assertEqual((got["status"], got["result"]), ("expired", None))
        c.disconnect()

    # -- refused results ---------------------------------------------------

    def test_refused_results_v5(self):
        d1, s1 = self.new_device("res1")
        d2, s2 = self.new_device("res2")
        c1 = self.create(d1, "mine")["id"]
        c2 = self.create(d2, "theirs")["id"]
        r = self.raw_device(d1, s1, 5)
        self.assertEqual(r.do_subscribe([(self.cmd_filter(d1), 1)]), [1])
        self.raw_take_command(r, d1, c1)
        self.assertEqual(self.get(c1)["status"], "sent")
        before1, before2 = self.get(c1), self.get(c2)
        pid = iter(range(1, 1000))

        def pub(cid, payload):
            if not isinstance(payload, (bytes, str)):
                payload = json.dumps(payload)
            return r.do_publish_qos1(self.result_topic(d1, cid), payload, packet_id=next(pid))

        def unchanged(what):
            self.assertEqual(self.get(c1), before1, what)
            self.assertEqual(self.get(c2), before2, what)

        ok = {"status": "succeeded", "output": 1}
        self.assertEqual(pub("cmd_00000000000000000000000000000000", ok), RC5_NOT_AUTHORIZED,
                         "result for an unknown command")
        unchanged("unknown cid")
        self.assertEqual(pub("no-such-thing", ok), RC5_NOT_AUTHORIZED)
        unchanged("unknown cid")
        self.assertEqual(pub(c2, ok), RC5_NOT_AUTHORIZED, "result for another device's command")
        unchanged("foreign cid")
        bad = [b"{not json", b"", b"[1]", b'"succeeded"', {"output": 1},
               {"status": "done"}, {"status": 1}, {"status": "queued"}, {"status": "expired"},
               {"status": "sent"}]
        for payload in bad:
            self.assertEqual(pub(c1, payload), RC5_PAYLOAD_FORMAT_INVALID,
                             "malformed result %r" % (payload,))
            unchanged("malformed result %r" % (payload,))
        r.do_ping()
        self.assertEqual(pub(c1, {"status": "succeeded", "output": {"v": 1}}), RC5_SUCCESS)
        done = self.get(c1)
        self.assertEqual((done["status"], done["result"]), ("succeeded", {"v": 1}))
        for payload in ({"status": "failed", "output": "again"}, ok):
            self.assertEqual(pub(c1, payload), RC5_IMPL_SPECIFIC,
                             "result for a command already finished")
            self.assertEqual(self.get(c1), done, "a second result changed a finished command")
        self.assertEqual(self.get(c2), before2)
        # d2's own command is still open: d2 can finish it.
        r2 = self.raw_device(d2, s2, 5)
        self.assertEqual(r2.do_subscribe([(self.cmd_filter(d2), 1)]), [1])
        self.raw_take_command(r2, d2, c2)
        self.assertEqual(r2.do_publish_qos1(self.result_topic(d2, c2),
                                            json.dumps({"status": "rejected"})), RC5_SUCCESS)
        self.assertEqual(self.get(c2)["status"], "rejected")

    def test_refused_results_v311_change_nothing(self):
        d, s = self.new_device("res4")
        cid = self.create(d, "x")["id"]
        r = self.raw_device(d, s, 4)
        self.assertEqual(r.do_subscribe([(self.cmd_filter(d), 1)]), [1])
        self.raw_take_command(r, d, cid)
        before = self.get(cid)
        for i, payload in enumerate([b"{bad", b'{"status": "nope"}'], start=1):
            self.assertEqual(r.do_publish_qos1(self.result_topic(d, cid), payload,
                                               packet_id=i), 0)
        self.assertEqual(r.do_publish_qos1(self.result_topic(d, "cmd_unknown"),
                                           b'{"status": "succeeded"}', packet_id=5), 0)
        self.assertTrue(r.is_open(0.2))
        self.assertEqual(self.get(cid), before)

    # -- history and validation ---------------------------------------------

    def test_history_newest_first_paging(self):
        d, _ = self.new_device("hist")
        made = []
        for i in range(7):
            made.append(self.create(d, "c%d" % i, {"i": i}))
            time.sleep(0.003)  # distinct created_at: "newest first" is well defined
        created = [x["created_at"] for x in made]
        self.assertEqual(created, sorted(set(created)), "created_at must grow")
        want = [x["id"] for x in reversed(made)]
        st, js = self.server.api("GET", "/api/v1/devices/%s/commands" % d)
        self.assertEqual(st, 200, js)
        self.assertEqual([x["id"] for x in js["commands"]], want, "newest first")
        self.assertIsNone(js["next"])
        self.assertEqual(js["commands"][0]["params"], {"i": 6})
        got, pages, cursor = [], [], None
        for _ in range(10):
            q = "?limit=3" + ("&cursor=" + quote(cursor, safe="") if cursor else "")
            st, js = self.server.api("GET", "/api/v1/devices/%s/commands%s" % (d, q))
            self.assertEqual(st, 200, js)
            pages.append(len(js["commands"]))
            got += [x["id"] for x in js["commands"]]
            cursor = js["next"]
            if not cursor:
                break
        self.assertEqual(got, want, "paging lists every command once, newest first")
        self.assertEqual(pages[:3], [3, 3, 1])
        # Other devices' commands are not listed.
        other, _ = self.new_device("hist2")
        self.create(other, "elsewhere")
        st, js = self.server.api("GET", "/api/v1/devices/%s/commands?limit=100" % d)
        self.assertEqual([x["id"] for x in js["commands"]], want)
        for q in ("?limit=0", "?limit=x", "?cursor=garbage"):
            st, js = self.server.api("GET", "/api/v1/devices/%s/commands%s" % (d, q))
            self.assertError(st, js, 400, "bad_request")
        st, js = self.server.api("GET", "/api/v1/devices/no-such-dev/commands")
        self.assertError(st, js, 404, "not_found")

    def test_post_validation(self):
        d, _ = self.new_device("val")
        bad = [
            {},
            {"name": ""},
            {"name": "has space"},
            {"name": "x" * 65},
            {"name": "a/b"},
            {"name": 5},
            {"name": None},
            {"name": "ok", "params": [1, 2]},
            {"name": "ok", "params": "text"},
            {"name": "ok", "params": 3},
            {"name": "ok", "params": True},
            {"name": "ok", "timeout_s": 0},
            {"name": "ok", "timeout_s": -5},
            {"name": "ok", "timeout_s": MAX_COMMAND_TIMEOUT_S + 1},
            {"name": "ok", "timeout_s": 10 ** 15},
            {"name": "ok", "timeout_s": "60"},
            {"name": "ok", "timeout_s": 1.5},
        ]
        for body in bad:
            st, js = self.post(d, body)
            self.assertError(st, js, 400, "bad_request")
        for raw in ("[1]", "\"reboot\"", "{nope", ""):
            st, js = self.post(d, raw)
            self.assertError(st, js, 400, "bad_request")
        st, js = self.server.api("GET", "/api/v1/devices/%s/commands" % d)
        self.assertEqual(js["commands"], [], "a refused POST created nothing")
        # The edges that are allowed.
        self.create(d, "x" * 64, timeout_s=MAX_COMMAND_TIMEOUT_S)
        self.create(d, "A.b_c-9", {}, timeout_s=1)
        st, js = self.post("no-such-device", {"name": "reboot"})
        self.assertError(st, js, 404, "not_found")
        st, js = self.server.api("GET", "/api/v1/commands/cmd_0123456789abcdef")
        self.assertError(st, js, 404, "not_found")

    def test_default_timeout(self):
        d, _ = self.new_device("deft")
        cmd = self.create(d, "plain")
        self.assertEqual(cmd["expires_at"] - cmd["created_at"], 300 * 1000,
                         "command_timeout_s defaults to 300")

    # -- restart ------------------------------------------------------------

    def test_commands_survive_restart(self):
        d, secret = self.new_device("rst")
        q = self.create(d, "after-restart", {"k": "v"}, timeout_s=300)
        done_d, done_s = self.new_device("rstdone")
        c = self.commands_online_device(done_d, done_s)
        f = self.create(done_d, "finished")
        self.wait_cmd(c, done_d, f["id"])
        self.assertTrue(c.publish(self.result_topic(done_d, f["id"]),
                                  {"status": "failed", "output": "x"}, qos=1))
        c.disconnect()
        finished = self.get(f["id"])
        self.server.restart()
        got = self.get(q["id"])
        self.assertEqual((got["status"], got["params"], got["expires_at"]),
                         ("queued", {"k": "v"}, q["expires_at"]))
        self.assertEqual(self.get(f["id"]), finished)
        c = self.commands_online_device(d, secret, 5)
        m = self.wait_cmd(c, d, q["id"])
        self.assertEqual(json.loads(m.payload), {"id": q["id"], "name": "after-restart",
                                                 "params": {"k": "v"},
                                                 "expires_at": q["expires_at"]})
        self.assertEqual(self.get(q["id"])["status"], "sent")
        self.assertTrue(c.publish(self.result_topic(d, q["id"]), {"status": "succeeded"}, qos=1))
        self.assertEqual(self.get(q["id"])["status"], "succeeded")
        c.disconnect()


if __name__ == "__main__":
    harness.main()
