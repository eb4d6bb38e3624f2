"""Sessions: QoS 1 messages queued for an offline persistent session,
nothing kept for a clean one, and will messages."""

import os
import select
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw  # noqa: E402
from harness import HOST  # noqa: E402


class SessionTest(harness.ServerTestCase):

    def inbox(self, d):
        return "devices/%s/inbox" % d

    def app_publish(self, topic, payloads, client_id="app-1"):
        app = self.app_client(client_id)
        app.connect_ok()
        for p in payloads:
            self.assertTrue(app.publish(topic, p, qos=1), "app PUBACK for %r" % p)
        app.disconnect()

    def test_online_delivery(self):
        for version in (4, 5):
            d, secret = self.new_device("deliv%d" % version)
            c = self.device_client(d, secret, version=version)
            c.connect_ok()
            self.assertIn(c.subscribe(self.inbox(d), 1), ([1], [0]))
            self.app_publish(self.inbox(d), ["hello-%d" % version])
            m = c.wait_message(self.inbox(d), 5)
            self.assertIsNotNone(m, "no delivery to an online device")
            self.assertEqual(m.payload, b"hello-%d" % version)
            self.assertEqual(m.qos, 1)
            c.disconnect()

    def test_own_wildcards_and_unsubscribe(self):
        for version in (4, 5):
            d, secret = self.new_device("wild%d" % version)
            c = self.device_client(d, secret, version=version)
            c.connect_ok()
            self.assertIn(c.subscribe("devices/%s/+" % d, 1)[0], (0, 1))
            self.assertIn(c.subscribe("devices/%s/cmd/#" % d, 1)[0], (0, 1))
            self.app_publish("devices/%s/inbox" % d, ["plus"])
            self.app_publish("devices/%s/cmd/a/b" % d, ["hash"])
            self.app_publish("devices/%s/other/deep" % d, ["no-match"])
            harness.wait_for(lambda: len(c.messages) >= 2, 5, msg="wildcard deliveries")
            time.sleep(0.3)
            self.assertEqual(sorted((m.topic, m.payload) for m in c.messages),
                             sorted([("devices/%s/inbox" % d, b"plus"),
                                     ("devices/%s/cmd/a/b" % d, b"hash")]))
            c.unsubscribe("devices/%s/+" % d)
            n = len(c.messages)
            self.app_publish("devices/%s/inbox" % d, ["after-unsub"])
            self.app_publish("devices/%s/cmd/x" % d, ["still"])
            m = c.wait_message("devices/%s/cmd/x" % d, 5, start=n)
            self.assertIsNotNone(m, "remaining subscription stopped working")
            self.assertEqual([x.payload for x in c.messages[n:]], [b"still"],
                             "delivered after UNSUBSCRIBE")
            c.disconnect()

    def _persistent(self, version):
        d, secret = self.new_device("pers%d" % version)
        kw = dict(version=version, clean=False)
        if version == 5:
            kw["session_expiry"] = 300
        c = self.device_client(d, secret, **kw)
        c.connect_ok()
        self.assertEqual(c.subscribe(self.inbox(d), 1), [1])
        c.disconnect()
        msgs = ["queued-%d-%d" % (version, i) for i in range(5)]
        self.app_publish(self.inbox(d), msgs)
        c2 = self.device_client(d, secret, **kw)
        c2.connect_ok()
        self.assertEqual(c2.session_present, 1, "CONNACK session present flag")
        harness.wait_for(lambda: len(c2.messages) >= len(msgs), 5,
                         msg="%d queued messages" % len(msgs))
        self.assertEqual([m.payload.decode() for m in c2.messages], msgs, "queued order")
        for m in c2.messages:
            self.assertEqual(m.topic, self.inbox(d))
            self.assertEqual(m.qos, 1)
        # The subscription is still there: live delivery works without
        # subscribing again.
        self.app_publish(self.inbox(d), ["live"])
        harness.wait_for(lambda: len(c2.messages) == len(msgs) + 1, 5, msg="live message")
        c2.disconnect()

    def test_persistent_session_311(self):
        self._persistent(4)

    def test_persistent_session_5(self):
        self._persistent(5)

    def test_clean_session_gets_nothing_311(self):
        d, secret = self.new_device("clean")
        c = self.device_client(d, secret, version=4, clean=True)
        c.connect_ok()
        c.subscribe(self.inbox(d), 1)
        c.disconnect()
        self.app_publish(self.inbox(d), ["lost"])
        c2 = self.device_client(d, secret, version=4, clean=True)
        c2.connect_ok()
        self.assertEqual(c2.session_present, 0)
        self.assertIsNone(c2.wait_message(timeout=1.0), "clean session got a queued message")
        c2.disconnect()

    def test_v5_no_session_expiry_gets_nothing(self):
        # clean_start False but Session Expiry Interval 0 (absent): the
        # session ends with the connection.
        d, secret = self.new_device("exp0")
        c = self.device_client(d, secret, version=5, clean=False)
        c.connect_ok()
        c.subscribe(self.inbox(d), 1)
        c.disconnect()
        self.app_publish(self.inbox(d), ["lost"])
        c2 = self.device_client(d, secret, version=5, clean=False)
        c2.connect_ok()
        self.assertEqual(c2.session_present, 0)
        self.assertIsNone(c2.wait_message(timeout=1.0))
        c2.disconnect()

    def test_persistent_then_clean_discards(self):
        d, secret = self.new_device("discard")
        c = self.device_client(d, secret, version=4, clean=False)
        c.connect_ok()
        c.subscribe(self.inbox(d), 1)
        c.disconnect()
        self.app_publish(self.inbox(d), ["lost"])
        c2 = self.device_client(d, secret, version=4, clean=True)
        c2.connect_ok()
        self.assertEqual(c2.session_present, 0)
        self.assertIsNone(c2.wait_message(timeout=1.0), "clean start must discard the session")
        c2.disconnect()

    # -- wills ----------------------------------------------------------------

    def status(self, d):
        return "devices/%s/status" % d

    def will_watcher(self, client_id="app-2"):
        app = self.app_client(client_id)
        app.connect_ok()
        self.assertIn(app.subscribe("devices/+/status", 1), ([0], [1]))
        return app

    def raw_with_will(self, d, secret, version, keepalive=60):
        c, _, _ = mqttraw.connect_ok(HOST, self.server.mqtt_port, d, d, secret,
                                     version=version, keepalive=keepalive,
                                     will=dict(topic=self.status(d), payload=b"gone", qos=1))
        self.addCleanup(c.close)
        return c

    def test_will_on_unclean_close(self):
        for version in (4, 5):
            d, secret = self.new_device("will%d" % version)
            app = self.will_watcher("app-w%d" % version)
            c = self.raw_with_will(d, secret, version)
            c.do_ping()
            c.close()  # no DISCONNECT
            m = app.wait_message(self.status(d), 5)
            self.assertIsNotNone(m, "will not published after an unclean close (v%d)" % version)
            self.assertEqual(m.payload, b"gone")

    def test_will_on_keepalive_expiry(self):
        d, secret = self.new_device("willka")
        app = self.will_watcher("app-wka")
        self.raw_with_will(d, secret, 4, keepalive=1)
        m = app.wait_message(self.status(d), 1.5 + 3)
        self.assertIsNotNone(m, "will not published after keepalive expiry")
        self.assertEqual(m.payload, b"gone")

    def test_no_will_on_clean_disconnect(self):
        for version in (4, 5):
            d, secret = self.new_device("nowill%d" % version)
            app = self.will_watcher("app-nw%d" % version)
            c = self.raw_with_will(d, secret, version)
            c.do_ping()
            c.do_disconnect()
            self.assertIsNone(app.wait_message(self.status(d), 1.5),
                              "will published after a clean DISCONNECT (v%d)" % version)

    def test_will_seen_by_mosquitto_sub(self):
        harness.require_tool("mosquitto_sub")
        # stdbuf: mosquitto_sub's stdout is block-buffered into a pipe, and
        # we need its -d trace line by line to know when it has subscribed.
        stdbuf = harness.require_tool("stdbuf")
        d, secret = self.new_device("willsub")
        p = subprocess.Popen(
            [stdbuf, "-oL", "mosquitto_sub", "-h", HOST, "-p", str(self.server.mqtt_port), "-V", "mqttv311",
             "-i", "app-sub", "-u", "app", "-P", self.server.token, "-q", "1",
             "-t", "devices/+/status", "-C", "1", "-W", "15", "-v", "-d"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        # -d prints protocol traffic: wait for the SUBACK before the device dies.
        deadline = time.monotonic() + 10
        seen = b""
        while b"SUBACK" not in seen:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, "mosquitto_sub never subscribed: %r" % seen)
            r, _, _ = select.select([p.stdout], [], [], left)
            if r:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    self.fail("mosquitto_sub exited: %r %r" % (seen, p.stderr.read()))
                seen += chunk
        c = self.raw_with_will(d, secret, 4)
        c.abort()
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            self.fail("mosquitto_sub got no will within 10s")
        out = (seen + out).decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("%s gone" % self.status(d), out)


class SessionLimitTest(harness.ServerTestCase):
    server_config = "max_queued = 5\n"

    def test_offline_queue_is_bounded(self):
        d, secret = self.new_device("bound")
        inbox = "devices/%s/inbox" % d
        c = self.device_client(d, secret, clean=False)
        c.connect_ok()
        c.subscribe(inbox, 1)
        c.disconnect()
        app = self.app_client("app-bound")
        app.connect_ok()
        for i in range(20):
            # The publisher is acknowledged even when the queue is full.
            self.assertTrue(app.publish(inbox, "m%d" % i), "publish %d" % i)
        app.disconnect()
        c2 = self.device_client(d, secret, clean=False)
        c2.connect_ok()
        self.assertEqual(c2.session_present, 1)
        harness.wait_for(lambda: c2.messages, 5, msg="queued messages")
        time.sleep(1.0)
        got = [m.payload.decode() for m in c2.messages]
        self.assertTrue(1 <= len(got) <= 5, "max_queued = 5 but %d delivered: %r"
                        % (len(got), got))
        self.assertEqual(len(set(got)), len(got), "duplicates: %r" % got)
        c2.disconnect()
        self.assertEqual(self.server.api("GET", "/healthz", token=None)[0], 200)


if __name__ == "__main__":
    harness.main()
