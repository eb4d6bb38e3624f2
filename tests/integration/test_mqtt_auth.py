"""MQTT device authentication: username = client id = device id, password =
secret, with Paho (3.1.1 and 5.0), mosquitto_pub and raw packets."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw  # noqa: E402
from harness import HOST, uid  # noqa: E402

# 3.1.1 CONNACK return codes / 5.0 reason codes
RC311_BAD_CREDENTIALS = 0x04
RC311_NOT_AUTHORIZED = 0x05
RC311_ID_REJECTED = 0x02
RC5_BAD_CREDENTIALS = 0x86
RC5_NOT_AUTHORIZED = 0x87
RC5_CLIENT_ID_INVALID = 0x85


class MqttAuthTest(harness.ServerTestCase):

    def connack(self, client_id, username, password, version):
        c = self.mqtt(client_id, username, password, version=version)
        rc = c.connect()
        if rc != 0:
            self.assertTrue(c.wait_disconnected(3),
                            "connection left open after a refused CONNACK")
        c.close()
        return rc

    # -- good credentials -------------------------------------------------

    def test_paho_good_credentials(self):
        for version in (4, 5):
            d, secret = self.new_device("good%d" % version)
            c = self.device_client(d, secret, version=version)
            self.assertEqual(c.connect(), 0)
            self.assertTrue(c.publish("devices/%s/telemetry" % d, {"temp": version}),
                            "QoS 1 PUBACK")
            c.disconnect()
            self.assertEqual(self.server.device(d)["telemetry"]["temp"]["value"], version)

    def test_mosquitto_pub_credentials(self):
        harness.require_tool("mosquitto_pub")
        for proto in ("mqttv311", "mqttv5"):
            d, secret = self.new_device("mp")
            base = ["mosquitto_pub", "-h", HOST, "-p", str(self.server.mqtt_port),
                    "-V", proto, "-i", d, "-u", d, "-q", "1",
                    "-t", "devices/%s/telemetry" % d, "-m", json.dumps({"temp": 7})]
            r = harness.run(base + ["-P", secret], timeout=20)
            self.assertEqual(r.returncode, 0, "%s good: %s %s" % (proto, r.stdout, r.stderr))
            self.assertEqual(self.server.device(d)["telemetry"]["temp"]["value"], 7)
            r = harness.run(base + ["-P", secret + "x"], timeout=20)
            self.assertNotEqual(r.returncode, 0, "%s: wrong secret accepted" % proto)
            self.assertEqual(len(self.server.telemetry(d)["points"]), 1)

    # -- refusals -----------------------------------------------------------

    def test_wrong_secret(self):
        d, secret = self.new_device("wrong")
        wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        self.assertEqual(self.connack(d, d, wrong, 4), RC311_BAD_CREDENTIALS)
        self.assertEqual(self.connack(d, d, wrong, 5), RC5_BAD_CREDENTIALS)
        self.assertEqual(self.connack(d, d, "", 4), RC311_BAD_CREDENTIALS)
        self.assertEqual(self.connack(d, d, secret + secret, 5), RC5_BAD_CREDENTIALS)
        self.assertEqual(self.connack(d, d, secret, 4), 0, "good secret after bad ones")

    def test_unknown_device(self):
        d = uid("ghost")
        self.assertEqual(self.connack(d, d, "whatever-secret-123456", 4), RC311_BAD_CREDENTIALS)
        self.assertEqual(self.connack(d, d, "whatever-secret-123456", 5), RC5_BAD_CREDENTIALS)

    def test_no_credentials(self):
        d, secret = self.new_device("anon")
        self.assertIn(self.connack(d, None, None, 4), (RC311_BAD_CREDENTIALS, RC311_NOT_AUTHORIZED))
        self.assertIn(self.connack(d, None, None, 5), (RC5_BAD_CREDENTIALS, RC5_NOT_AUTHORIZED))
        self.assertIn(self.connack("random-client", None, None, 4),
                      (RC311_BAD_CREDENTIALS, RC311_NOT_AUTHORIZED))

    def test_client_id_must_equal_username(self):
        d, secret = self.new_device("cid")
        other, _ = self.new_device("cid-other")
        for cid in ("something-else", other, d + "x"):
            rc = self.connack(cid, d, secret, 4)
            self.assertIn(rc, (RC311_ID_REJECTED, RC311_BAD_CREDENTIALS, RC311_NOT_AUTHORIZED),
                          "3.1.1 client id %r with %s's credentials" % (cid, d))
            rc = self.connack(cid, d, secret, 5)
            self.assertIn(rc, (RC5_CLIENT_ID_INVALID, RC5_BAD_CREDENTIALS, RC5_NOT_AUTHORIZED),
                          "5.0 client id %r with %s's credentials" % (cid, d))
        # Another device's id as username with this device's secret: no.
        self.assertEqual(self.connack(other, other, secret, 4), RC311_BAD_CREDENTIALS)

    def test_app_token_cannot_use_device_client_id(self):
        d, secret = self.new_device("appid")
        c = self.device_client(d, secret)
        c.connect_ok()
        rc = self.connack(d, "app", self.server.token, 4)
        self.assertNotEqual(rc, 0, "an app client took a device's client id")
        self.assertFalse(c.disconnected, "the device was kicked by a refused app client")
        self.assertTrue(c.publish("devices/%s/telemetry" % d, {"x": 1}))
        c.disconnect()
        app = self.app_client("app-ok")
        self.assertEqual(app.connect(), 0)
        app.disconnect()
        # A wrong token is refused like a wrong secret.
        self.assertEqual(self.connack("app-bad", "app", "drv_" + "x" * 43, 4),
                         RC311_BAD_CREDENTIALS)

    def test_raw_connack_codes(self):
        """Exact bytes: 3.1.1 CONNACK 20 02 00 04, 5.0 reason 0x86, then close."""
        d, secret = self.new_device("raw")
        for version, want in ((4, RC311_BAD_CREDENTIALS), (5, RC5_BAD_CREDENTIALS)):
            c = self.raw(version)
            sp, rc, _ = c.do_connect(d, d, "bad-" + secret)
            self.assertEqual((sp, rc), (0, want))
            closed, _ = c.wait_closed(3)
            self.assertTrue(closed, "server kept a refused connection open")
        c = self.raw(5)
        sp, rc, props = c.do_connect(d, d, secret)
        self.assertEqual(rc, 0)
        c.do_ping()
        c.do_disconnect()

    # -- credentials changing under a live connection -----------------------

    def test_rotated_secret(self):
        for version in (4, 5):
            d, old = self.new_device("rot%d" % version)
            live = self.device_client(d, old, version=version)
            live.connect_ok()
            st, js = self.server.api("POST", "/api/v1/devices/%s/secret" % d)
            self.assertEqual(st, 200, js)
            new = js["secret"]
            self.assertTrue(live.wait_disconnected(5),
                            "live connection not dropped after secret rotation")
            want_bad = RC311_BAD_CREDENTIALS if version == 4 else RC5_BAD_CREDENTIALS
            self.assertEqual(self.connack(d, d, old, version), want_bad, "old secret")
            c = self.device_client(d, new, version=version)
            self.assertEqual(c.connect(), 0, "new secret")
            self.assertTrue(c.publish("devices/%s/telemetry" % d, {"v": 1}))
            c.disconnect()

    def test_deleted_device_dropped(self):
        for version in (4, 5):
            d, secret = self.new_device("gone%d" % version)
            live = self.device_client(d, secret, version=version)
            live.connect_ok()
            st, _ = self.server.api("DELETE", "/api/v1/devices/" + d)
            self.assertEqual(st, 204)
            self.assertTrue(live.wait_disconnected(5), "live connection survived delete")
            want_bad = RC311_BAD_CREDENTIALS if version == 4 else RC5_BAD_CREDENTIALS
            self.assertEqual(self.connack(d, d, secret, version), want_bad)


if __name__ == "__main__":
    harness.main()
