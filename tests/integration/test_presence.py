"""Online status from the connection itself: connect, clean DISCONNECT,
socket close, TCP reset, keepalive expiry; last_seen kept across a
restart."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw  # noqa: E402
from harness import HOST, now_ms, wait_for  # noqa: E402

SLACK_MS = 2000


class PresenceTest(harness.ServerTestCase):

    def online(self, d):
        return self.server.device(d)["online"]

    def wait_online(self, d, want, timeout=3.0):
        wait_for(lambda: self.online(d) is want, timeout,
                 msg="%s online=%s" % (d, want))

    def raw_connect(self, d, secret, version=4, keepalive=60):
        c, _, _ = mqttraw.connect_ok(HOST, self.server.mqtt_port, d, d, secret,
                                     version=version, keepalive=keepalive)
        self.addCleanup(c.close)
        return c

    def assert_last_seen(self, d, t0):
        ls = self.server.device(d)["last_seen"]
        self.assertIsInstance(ls, int, "last_seen not set")
        self.assertTrue(t0 - SLACK_MS <= ls <= now_ms() + SLACK_MS, (t0, ls))
        return ls

    def test_online_then_offline_on_clean_disconnect(self):
        for version in (4, 5):
            d, secret = self.new_device("pres%d" % version)
            dev = self.server.device(d)
            self.assertIs(dev["online"], False)
            self.assertIsNone(dev["last_seen"])
            t0 = now_ms()
            c = self.device_client(d, secret, version=version)
            c.connect_ok()
            self.wait_online(d, True, 2)
            c.disconnect()
            self.wait_online(d, False)
            self.assert_last_seen(d, t0)

    def test_offline_after_socket_close_without_disconnect(self):
        d, secret = self.new_device("close")
        t0 = now_ms()
        c = self.raw_connect(d, secret)
        self.wait_online(d, True, 2)
        c.close()
        self.wait_online(d, False)
        self.assert_last_seen(d, t0)

    def test_offline_after_tcp_reset(self):
        d, secret = self.new_device("rst")
        c = self.raw_connect(d, secret, version=5)
        self.wait_online(d, True, 2)
        c.abort()
        self.wait_online(d, False)

    def test_offline_after_paho_socket_drop(self):
        d, secret = self.new_device("drop")
        c = self.device_client(d, secret)
        c.connect_ok()
        self.wait_online(d, True, 2)
        c.abort()
        self.wait_online(d, False)

    def _keepalive_expiry(self, keepalive, version):
        d, secret = self.new_device("ka%d" % keepalive)
        c = self.raw_connect(d, secret, version=version, keepalive=keepalive)
        t0 = time.monotonic()
        self.wait_online(d, True, 2)
        # Silence. The server must drop us after 1.5 x keepalive.
        limit = 1.5 * keepalive + 1.5
        closed, pkts = c.wait_closed(limit)
        elapsed = time.monotonic() - t0
        self.assertTrue(closed, "silent client still connected after %.1fs (keepalive %ds)"
                        % (elapsed, keepalive))
        self.assertGreaterEqual(elapsed, keepalive * 0.95,
                                "dropped after %.2fs, before the keepalive of %ds"
                                % (elapsed, keepalive))
        for p in pkts:
            if p.type == mqttraw.DISCONNECT and version == 5:
                self.assertEqual(mqttraw.parse_disconnect(p, 5), 0x8D, "keepalive timeout")
        self.wait_online(d, False, 1.5)
        ls = self.server.device(d)["last_seen"]
        self.assertIsInstance(ls, int)

    def test_offline_after_keepalive_expiry_1s(self):
        self._keepalive_expiry(1, 4)

    def test_offline_after_keepalive_expiry_2s_v5(self):
        self._keepalive_expiry(2, 5)

    def test_pings_keep_connection(self):
        d, secret = self.new_device("ping")
        c = self.raw_connect(d, secret, keepalive=1)
        end = time.monotonic() + 3.5
        while time.monotonic() < end:
            c.do_ping(2)
            time.sleep(0.4)
        self.assertTrue(self.online(d))
        c.do_disconnect()
        self.wait_online(d, False)

    def test_takeover_keeps_online(self):
        """A second connection with the same id takes over: the device stays
        online, and goes offline only when the second one leaves."""
        d, secret = self.new_device("take")
        first = self.device_client(d, secret)
        first.connect_ok()
        self.wait_online(d, True, 2)
        second = self.device_client(d, secret)
        second.connect_ok()
        self.assertTrue(first.wait_disconnected(5), "first connection not taken over")
        time.sleep(0.3)
        self.assertTrue(self.online(d), "takeover marked the device offline")
        second.disconnect()
        self.wait_online(d, False)


class PresenceRestartTest(harness.ServerTestCase):

    def test_last_seen_survives_restart(self):
        gone, gone_secret = self.new_device("ls")
        c = self.device_client(gone, gone_secret)
        c.connect_ok()
        c.disconnect()
        wait_for(lambda: not self.server.device(gone)["online"], 3, msg="offline")
        ls = self.server.device(gone)["last_seen"]
        self.assertIsInstance(ls, int)

        # A device still connected when the server stops.
        live, live_secret = self.new_device("live")
        t0 = now_ms()
        lc = self.device_client(live, live_secret)
        lc.connect_ok()
        wait_for(lambda: self.server.device(live)["online"], 2, msg="online")

        self.server.restart()
        lc.close()
        dev = self.server.device(gone)
        self.assertEqual(dev["last_seen"], ls, "last_seen changed across a restart")
        self.assertIs(dev["online"], False)
        dev = self.server.device(live)
        self.assertIs(dev["online"], False, "nobody is connected after a restart")
        self.assertIsInstance(dev["last_seen"], int, "last_seen of a device online at "
                              "shutdown was lost")
        self.assertGreaterEqual(dev["last_seen"], t0 - SLACK_MS)


if __name__ == "__main__":
    harness.main()
