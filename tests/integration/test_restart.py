"""Durability: devices, tags, secrets and telemetry survive a graceful
restart, and acknowledged data survives SIGKILL."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Droverd, uid  # noqa: E402

T = 1650000000000


class RestartTest(unittest.TestCase):

    def setUp(self):
        self.s = Droverd()
        self.addCleanup(self.s.cleanup)
        self.s.start()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def mqtt(self, d, secret, **kw):
        c = self.s.mqtt(d, d, secret, **kw)
        self.clients.append(c)
        return c

    def publish_all(self, d, secret, payloads, version=4):
        c = self.mqtt(d, secret, version=version)
        c.connect_ok()
        mids = [c.publish_nowait("devices/%s/telemetry" % d, p) for p in payloads]
        self.assertTrue(c._wait(lambda: all(m in c.acked for m in mids), 15),
                        "not every PUBACK arrived")
        c.disconnect()

    def snapshot(self):
        st, js = self.s.api("GET", "/api/v1/devices?limit=1000")
        self.assertEqual(st, 200)
        out = {}
        for dev in js["devices"]:
            d = dev["id"]
            full = self.s.device(d)
            full.pop("online", None)
            out[d] = (full, self.s.all_points(d))
        return out

    def test_graceful_restart_keeps_everything(self):
        devs = {}
        for i in range(3):
            d = uid("keep")
            devs[d] = self.s.create_device(d, {"n": i, "site": "s%d" % i, "on": i % 2 == 0})
            self.publish_all(d, devs[d], [{"temp": 20 + j, "hum": j, "ts": T + j * 1000}
                                          for j in range(10)])
        # One with a server-side timestamp, one rotated, one deleted.
        d0, d1, d2 = sorted(devs)
        self.publish_all(d0, devs[d0], [{"servertime": 1}], version=5)
        st, js = self.s.api("POST", "/api/v1/devices/%s/secret" % d1)
        self.assertEqual(st, 200)
        old1, devs[d1] = devs[d1], js["secret"]
        gone = uid("gone")
        gone_secret = self.s.create_device(gone)
        self.publish_all(gone, gone_secret, [{"x": 1, "ts": T}])
        self.assertEqual(self.s.api("DELETE", "/api/v1/devices/" + gone)[0], 204)
        token = self.s.token

        before = self.snapshot()
        self.assertEqual(set(before), set(devs))
        self.s.restart()
        self.assertEqual(self.s.token, token)
        after = self.snapshot()
        self.assertEqual(set(after), set(before), "device set changed")
        for d in before:
            self.assertEqual(after[d][0], before[d][0], "device %s changed" % d)
            self.assertEqual(after[d][1], before[d][1], "telemetry of %s changed" % d)
        self.assertEqual(len(after[d0][1]), 21)
        self.assertEqual(self.s.api("GET", "/api/v1/devices/" + gone)[0], 404)

        # Secrets: the current ones work, superseded and deleted ones do not.
        for d, secret in devs.items():
            c = self.mqtt(d, secret)
            self.assertEqual(c.connect(), 0, "secret of %s lost in the restart" % d)
            c.disconnect()
        for d, secret in ((d1, old1), (gone, gone_secret)):
            c = self.mqtt(d, secret)
            self.assertNotEqual(c.connect(), 0, "old secret of %s works after restart" % d)
            c.close()

        # New data after the restart adds to the old.
        self.publish_all(d2, devs[d2], [{"temp": 99, "ts": T + 60000}])
        temps = [p["value"] for p in self.s.all_points(d2, {"metric": "temp"})]
        self.assertEqual(temps, list(range(20, 30)) + [99])
        self.s.stop()

    def test_sigkill_keeps_acknowledged(self):
        """QoS 1 PUBACK and HTTP 201 promise durability: SIGKILL right after
        loses nothing that was acknowledged."""
        d = uid("kill")
        secret = self.s.create_device(d, {"k": "v"})
        self.publish_all(d, secret, [{"n": i, "ts": T + i} for i in range(300)])
        late = uid("late")
        late_secret = self.s.create_device(late)
        self.s.kill()
        self.s.start()
        vals = [p["value"] for p in self.s.all_points(d, {"metric": "n"})]
        self.assertEqual(vals, list(range(300)), "acknowledged telemetry lost on SIGKILL")
        self.assertEqual(self.s.device(d)["tags"], {"k": "v"})
        self.assertEqual(self.s.api("GET", "/api/v1/devices/" + late)[0], 200,
                         "device created (201) just before SIGKILL is gone")
        c = self.mqtt(late, late_secret)
        self.assertEqual(c.connect(), 0)
        c.disconnect()
        self.s.stop()

    def test_restart_twice_same_ports(self):
        """Stop/start cycles re-bind the same ports (SO_REUSEADDR) even after
        clients were connected."""
        d = uid("cyc")
        secret = self.s.create_device(d)
        for i in range(2):
            c = self.mqtt(d, secret)
            c.connect_ok()
            self.assertTrue(c.publish("devices/%s/telemetry" % d, {"i": i, "ts": T + i}))
            self.s.restart()
            c.close()
        self.assertEqual(len(self.s.all_points(d)), 2)
        self.s.stop()


if __name__ == "__main__":
    harness.main()
