"""Telemetry over MQTT: QoS 1 messages visible through the API, device vs
server timestamps, arrays, bad JSON."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw  # noqa: E402
from harness import HOST, now_ms  # noqa: E402

RC5_PAYLOAD_FORMAT_INVALID = 0x99
CLOCK_SLACK_MS = 2000


class TelemetryTest(harness.ServerTestCase):

    def topic(self, d):
        return "devices/%s/telemetry" % d

    def raw_device(self, d, secret, version):
        c, _, _ = mqttraw.connect_ok(HOST, self.server.mqtt_port, d, d, secret, version=version)
        self.addCleanup(c.close)
        return c

    def test_paho_qos1_latest_and_series(self):
        for version in (4, 5):
            d, secret = self.new_device("tp%d" % version)
            c = self.device_client(d, secret, version=version)
            c.connect_ok()
            t0 = now_ms()
            self.assertTrue(c.publish(self.topic(d), {"temp": 21.5, "door": "open", "ok": True}))
            t1 = now_ms()
            c.disconnect()
            tel = self.server.device(d)["telemetry"]
            self.assertEqual(set(tel), {"temp", "door", "ok"})
            self.assertEqual(tel["temp"]["value"], 21.5)
            self.assertEqual(tel["door"]["value"], "open")
            self.assertIs(tel["ok"]["value"], True)
            ts = tel["temp"]["ts"]
            self.assertTrue(t0 - CLOCK_SLACK_MS <= ts <= t1 + CLOCK_SLACK_MS,
                            "server ts %d not in [%d, %d]" % (ts, t0, t1))
            self.assertEqual(tel["door"]["ts"], ts, "one message, one ts")
            pts = self.server.telemetry(d, "?metric=temp")["points"]
            self.assertEqual(pts, [{"metric": "temp", "ts": ts, "value": 21.5}])
            self.assertEqual(len(self.server.telemetry(d)["points"]), 3)

    def test_device_timestamp(self):
        d, secret = self.new_device("dts")
        self.send_telemetry(d, secret, [{"temp": 1, "ts": 1600000000123},
                                        {"temp": 2, "ts": 1600000005000, "seq": 7}])
        pts = self.server.telemetry(d)["points"]
        self.assertEqual([(p["metric"], p["ts"], p["value"]) for p in pts],
                         [("temp", 1600000000123, 1), ("temp", 1600000005000, 2)],
                         "device ts used; ts and seq are not metrics")
        latest = self.server.device(d)["telemetry"]
        self.assertEqual(latest, {"temp": {"value": 2, "ts": 1600000005000}})

    def test_series_ordered_by_ts_not_arrival(self):
        d, secret = self.new_device("late")
        self.send_telemetry(d, secret, [{"temp": 2, "ts": 1600000005000},
                                        {"temp": 1, "ts": 1600000001000}])
        pts = self.server.telemetry(d)["points"]
        self.assertEqual([p["value"] for p in pts], [1, 2], "series ordered by ts")

    def test_array_payload(self):
        d, secret = self.new_device("arr")
        t = 1650000000000
        self.send_telemetry(d, secret, [[{"temp": 1, "ts": t}, {"temp": 2, "hum": 40, "ts": t + 1000},
                                         {"temp": 3, "ts": t + 2000}]])
        pts = self.server.telemetry(d)["points"]
        self.assertEqual(sorted((p["ts"], p["metric"], p["value"]) for p in pts),
                         [(t, "temp", 1), (t + 1000, "hum", 40), (t + 1000, "temp", 2),
                          (t + 2000, "temp", 3)])
        self.assertEqual(self.server.device(d)["telemetry"]["temp"], {"value": 3, "ts": t + 2000})

    def test_value_types_round_trip(self):
        d, secret = self.new_device("types")
        t = 1650000000000
        self.send_telemetry(d, secret, [{"i": 42, "neg": -7, "f": 0.125, "big": 1e300,
                                         "yes": True, "no": False, "s": "h\u00e9llo \u2713",
                                         "ts": t}])
        tel = self.server.device(d)["telemetry"]
        want = {"i": 42, "neg": -7, "f": 0.125, "big": 1e300, "yes": True, "no": False,
                "s": "h\u00e9llo \u2713"}
        self.assertEqual({k: v["value"] for k, v in tel.items()}, want)
        for k, v in want.items():
            if isinstance(v, bool):
                self.assertIs(tel[k]["value"], v, "boolean %s came back as %r" % (k, tel[k]))

    def test_mosquitto_pub(self):
        harness.require_tool("mosquitto_pub")
        for proto in ("mqttv311", "mqttv5"):
            d, secret = self.new_device("mosq")
            r = harness.run(["mosquitto_pub", "-h", HOST, "-p", str(self.server.mqtt_port),
                             "-V", proto, "-i", d, "-u", d, "-P", secret, "-q", "1",
                             "-t", self.topic(d),
                             "-m", json.dumps({"temp": 3.5, "ts": 1650000000000})], timeout=20)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(self.server.telemetry(d)["points"],
                             [{"metric": "temp", "ts": 1650000000000, "value": 3.5}])

    def test_puback_means_stored(self):
        """A QoS 1 PUBACK comes only after the point is durably stored: the
        API sees it at once, without waiting."""
        d, secret = self.new_device("dur")
        c = self.raw_device(d, secret, 4)
        for i in range(1, 11):
            reason = c.do_publish_qos1(self.topic(d), json.dumps({"n": i, "ts": 1650000000000 + i}),
                                       packet_id=i)
            self.assertEqual(reason, 0)
            pts = self.server.telemetry(d)["points"]
            self.assertEqual(len(pts), i, "PUBACK %d before the point was visible" % i)

    def test_many_pipelined_in_order(self):
        d, secret = self.new_device("pipe")
        t = 1650000000000
        self.send_telemetry(d, secret, [{"n": i, "ts": t + i} for i in range(200)])
        pts = self.server.all_points(d, {"metric": "n"})
        self.assertEqual([p["value"] for p in pts], list(range(200)))

    def test_qos0_stored(self):
        d, secret = self.new_device("q0")
        c = self.device_client(d, secret)
        c.connect_ok()
        self.assertTrue(c.publish(self.topic(d), {"q0": 1, "ts": 1650000000000}, qos=0))
        harness.wait_for(lambda: self.server.telemetry(d)["points"], 3, msg="QoS 0 point")
        c.disconnect()

    def test_bad_json_v5_puback_0x99(self):
        d, secret = self.new_device("bad5")
        c = self.raw_device(d, secret, 5)
        bad = [b"not json", b'{"temp": ', b"", b'"just a string"', b"42", b"[1, 2]",
               b"\xff\xfe", b"{}x", b"null"]
        for i, payload in enumerate(bad, start=1):
            reason = c.do_publish_qos1(self.topic(d), payload, packet_id=i)
            self.assertEqual(reason, RC5_PAYLOAD_FORMAT_INVALID, "PUBACK for %r" % payload)
        self.assertEqual(self.server.telemetry(d)["points"], [])
        self.assertEqual(self.server.device(d)["telemetry"], {})
        c.do_ping()
        self.assertEqual(c.do_publish_qos1(self.topic(d), json.dumps({"good": 1}), packet_id=99), 0)
        self.assertEqual(len(self.server.telemetry(d)["points"]), 1)

    def test_bad_json_v311_acked_not_stored(self):
        d, secret = self.new_device("bad4")
        c = self.raw_device(d, secret, 4)
        for i, payload in enumerate([b"not json", b'{"temp": ', b"[1]"], start=1):
            reason = c.do_publish_qos1(self.topic(d), payload, packet_id=i)
            self.assertEqual(reason, 0)
        self.assertEqual(self.server.telemetry(d)["points"], [])
        self.assertEqual(c.do_publish_qos1(self.topic(d), json.dumps({"good": 1}), packet_id=9), 0)
        self.assertEqual(len(self.server.telemetry(d)["points"]), 1)
        # Paho 3.1.1 too: the connection survives bad JSON.
        p = self.device_client(d, secret, version=4)
        p.connect_ok()
        self.assertTrue(p.publish(self.topic(d), "{{{"))
        self.assertTrue(p.publish(self.topic(d), {"good": 2}))
        self.assertFalse(p.disconnected)
        p.disconnect()
        self.assertEqual(len(self.server.telemetry(d)["points"]), 2)


if __name__ == "__main__":
    harness.main()
