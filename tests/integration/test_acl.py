"""ACL: a device publishes and subscribes only under devices/{its id}/.
Violations are refused with the right codes, deliver and store nothing, and
leave the connection usable."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw  # noqa: E402
from harness import HOST  # noqa: E402

RC5_NOT_AUTHORIZED = 0x87
RC311_SUB_FAILURE = 0x80


class AclTest(harness.ServerTestCase):

    def setUp(self):
        super().setUp()
        self.a, self.a_secret = self.new_device("acl")
        # b's id starts with a's id: a prefix match on "devices/<a>" would
        # wrongly let a into b's namespace.
        self.b = self.a + "0"
        self.b_secret = self.server.create_device(self.b)

    def raw_device(self, version):
        c, sp, props = mqttraw.connect_ok(HOST, self.server.mqtt_port, self.a, self.a,
                                          self.a_secret, version=version)
        self.addCleanup(c.close)
        return c

    def assert_usable(self, c, pid=500):
        """The connection still works: ping and own QoS 1 telemetry."""
        c.do_ping()
        reason = c.do_publish_qos1("devices/%s/telemetry" % self.a, json.dumps({"ok": pid}),
                                   packet_id=pid)
        self.assertEqual(reason, 0)

    def assert_nothing_stored(self, dev):
        self.assertEqual(self.server.telemetry(dev)["points"], [],
                         "telemetry stored for %s by another device" % dev)
        self.assertEqual(self.server.device(dev)["telemetry"], {})

    # -- publish ------------------------------------------------------------

    def test_publish_other_namespace_v5_puback_0x87(self):
        c = self.raw_device(5)
        topics = ["devices/%s/telemetry" % self.b, "devices/%s/inbox" % self.b,
                  "other/topic", "devices", "devices/%s" % self.a,
                  "$SYS/x"]
        for i, t in enumerate(topics, start=1):
            reason = c.do_publish_qos1(t, json.dumps({"temp": 66}), packet_id=i)
            self.assertEqual(reason, RC5_NOT_AUTHORIZED, "PUBACK reason for %r" % t)
        self.assert_nothing_stored(self.b)
        self.assert_usable(c)

    def test_publish_other_namespace_v311(self):
        # 3.1.1 has no negative PUBACK: the server may ack and drop, or
        # close the connection. Either way nothing is stored.
        c = self.raw_device(4)
        c.send(mqttraw.publish("devices/%s/telemetry" % self.b, json.dumps({"temp": 66}),
                               qos=1, packet_id=9))
        try:
            p = c.read(3)
        except mqttraw.Closed:
            p = None
        if p is not None:
            pid, _ = mqttraw.parse_puback(p, 4)
            self.assertEqual(pid, 9)
            self.assert_usable(c)
        self.assert_nothing_stored(self.b)

    def test_publish_qos0_other_namespace_dropped(self):
        c = self.raw_device(5)
        c.send(mqttraw.publish("devices/%s/telemetry" % self.b, json.dumps({"temp": 66}),
                               qos=0, version=5))
        self.assert_usable(c)
        self.assert_nothing_stored(self.b)

    def test_violations_not_delivered(self):
        app = self.app_client("app-acl")
        app.connect_ok()
        self.assertIn(app.subscribe("devices/%s/#" % self.b, 1)[0], (0, 1))
        self.assertIn(app.subscribe("other/#", 1)[0], (0, 1))
        c = self.raw_device(5)
        c.do_publish_qos1("devices/%s/inbox" % self.b, "x", packet_id=3)
        c.send(mqttraw.publish("devices/%s/inbox" % self.b, "y", qos=0, version=5))
        c.do_publish_qos1("other/topic", "z", packet_id=4)
        c.do_ping()
        self.assertIsNone(app.wait_message(timeout=1.0), "a refused publish was delivered")
        # The app itself may publish there (full access), and it arrives.
        self.assertTrue(app.publish("devices/%s/inbox" % self.b, "from-app"))
        m = app.wait_message("devices/%s/inbox" % self.b, 3)
        self.assertIsNotNone(m)
        self.assertEqual(m.payload, b"from-app")

    # -- subscribe ------------------------------------------------------------

    def test_subscribe_outside_refused_v5(self):
        c = self.raw_device(5)
        bad = ["devices/%s/#" % self.b, "#", "devices/+/telemetry", "devices/#",
               "+/%s/inbox" % self.a, "other/#", "$SYS/#"]
        for i, f in enumerate(bad, start=1):
            codes = c.do_subscribe([(f, 1)], packet_id=i)
            self.assertEqual(codes, [RC5_NOT_AUTHORIZED], "SUBACK for %r" % f)
        # One SUBSCRIBE mixing allowed and refused filters.
        codes = c.do_subscribe([("devices/%s/inbox" % self.a, 1), ("devices/%s/inbox" % self.b, 1),
                                ("devices/%s/#" % self.a, 0)], packet_id=50)
        self.assertEqual(len(codes), 3)
        self.assertIn(codes[0], (0, 1))
        self.assertEqual(codes[1], RC5_NOT_AUTHORIZED)
        self.assertEqual(codes[2], 0)
        self.assert_usable(c)

    def test_subscribe_outside_refused_v311_paho(self):
        c = self.device_client(self.a, self.a_secret, version=4)
        c.connect_ok()
        for f in ("devices/%s/#" % self.b, "#", "devices/+/telemetry", "other/#"):
            self.assertEqual(c.subscribe(f, 1), [RC311_SUB_FAILURE], "SUBACK for %r" % f)
        self.assertIn(c.subscribe("devices/%s/inbox" % self.a, 1)[0], (0, 1))
        self.assertFalse(c.disconnected)
        self.assertTrue(c.publish("devices/%s/telemetry" % self.a, {"still": 1}))
        # A refused subscription receives nothing; the granted one works.
        app = self.app_client("app-acl2")
        app.connect_ok()
        self.assertTrue(app.publish("devices/%s/inbox" % self.b, "not-for-a"))
        self.assertTrue(app.publish("other/x", "not-for-a"))
        self.assertTrue(app.publish("devices/%s/inbox" % self.a, "for-a"))
        m = c.wait_message(timeout=3)
        self.assertIsNotNone(m)
        self.assertEqual((m.topic, m.payload), ("devices/%s/inbox" % self.a, b"for-a"))
        time.sleep(0.3)
        self.assertEqual([x.topic for x in c.messages], ["devices/%s/inbox" % self.a])

    def test_subscribe_outside_refused_v5_paho(self):
        c = self.device_client(self.a, self.a_secret, version=5)
        c.connect_ok()
        self.assertEqual(c.subscribe("#", 1), [RC5_NOT_AUTHORIZED])
        self.assertEqual(c.subscribe("devices/%s/#" % self.b, 1), [RC5_NOT_AUTHORIZED])
        self.assertTrue(c.publish("devices/%s/telemetry" % self.a, {"still": 5}))
        self.assertFalse(c.disconnected)


if __name__ == "__main__":
    harness.main()
