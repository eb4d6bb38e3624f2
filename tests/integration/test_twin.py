"""Device twin: desired state from the API to subscribed devices (online and
after an offline change), PUT/PATCH semantics and If-Match, reported merge
patches over MQTT with the delta, malformed reported payloads (MQTT 5 PUBACK
0x99, nothing stored), API limits, and the twin's lifetime (restart, device
deletion)."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw  # noqa: E402
from harness import HOST, now_ms  # noqa: E402

RC5_SUCCESS = 0x00
RC5_PAYLOAD_FORMAT_INVALID = 0x99
CLOCK_SLACK_MS = 2000
MAX_TWIN_BYTES = 65536
MAX_TWIN_DEPTH = 16


def nest(levels, leaf=1):
    """An object nested `levels` objects deep: nest(1) == {"k": 1}."""
    v = leaf
    for _ in range(levels):
        v = {"k": v}
    return v


class TwinTest(harness.ServerTestCase):

    # -- helpers ----------------------------------------------------------

    def desired_topic(self, d):
        return "devices/%s/twin/desired" % d

    def reported_topic(self, d):
        return "devices/%s/twin/reported" % d

    def twin(self, d):
        st, js = self.server.api("GET", "/api/v1/devices/%s/twin" % d)
        self.assertEqual(st, 200, "GET twin of %s: %r" % (d, js))
        return js

    def put(self, d, state, headers=None):
        return self.server.api("PUT", "/api/v1/devices/%s/twin/desired" % d, state,
                               headers=headers)

    def patch(self, d, patch, headers=None):
        return self.server.api("PATCH", "/api/v1/devices/%s/twin/desired" % d, patch,
                               headers=headers)

    def put_ok(self, d, state, headers=None):
        st, js = self.put(d, state, headers)
        self.assertEqual(st, 200, "PUT desired %r: %r" % (state, js))
        return js

    def desired_msgs(self, c, d, start=0):
        """Parsed payloads of the desired messages c got (from index start)."""
        out = []
        for m in c.messages[start:]:
            if m.topic == self.desired_topic(d):
                out.append(json.loads(m.payload))
        return out

    def wait_desired(self, c, d, version, timeout=5.0):
        """Waits for a desired message with this version; returns it."""
        def pred():
            for js in self.desired_msgs(c, d):
                if js.get("version") == version:
                    return js
            return None
        got = c._wait(lambda: pred() is not None, timeout)
        self.assertTrue(got, "no desired message with version %d within %.0fs; got %r"
                        % (version, timeout, self.desired_msgs(c, d)))
        return pred()

    def subscribed_device(self, d, secret, version=4):
        c = self.device_client(d, secret, version=version)
        c.connect_ok()
        self.assertEqual(c.subscribe(self.desired_topic(d), 1), [1])
        return c

    def raw_device(self, d, secret, version):
        c, _, _ = mqttraw.connect_ok(HOST, self.server.mqtt_port, d, d, secret, version=version)
        self.addCleanup(c.close)
        return c

    # -- desired -> device -------------------------------------------------

    def test_desired_put_reaches_subscribed_device(self):
        for version in (4, 5):
            d, secret = self.new_device("des%d" % version)
            c = self.subscribed_device(d, secret, version)
            first = self.wait_desired(c, d, 0)
            self.assertEqual(first, {"version": 0, "state": {}},
                             "the SUBSCRIBE must be answered with the current desired state")
            state = {"led": "on", "cfg": {"rate": 5, "tags": ["a", "b"]}, "ratio": 0.5}
            t0 = now_ms()
            js = self.put_ok(d, state)
            self.assertEqual(js["desired"], state)
            self.assertEqual(js["desired_version"], 1)
            self.assertTrue(t0 - CLOCK_SLACK_MS <= js["desired_at"] <= now_ms() + CLOCK_SLACK_MS,
                            js)
            msg = self.wait_desired(c, d, 1)
            self.assertEqual(msg, {"version": 1, "state": state})
            m = [x for x in c.messages if x.topic == self.desired_topic(d)][-1]
            self.assertEqual(m.qos, 1, "desired state is delivered at QoS 1")
            # A second change is pushed too, as the whole state.
            state2 = {"led": "off"}
            self.put_ok(d, state2)
            self.assertEqual(self.wait_desired(c, d, 2), {"version": 2, "state": state2})
            versions = [x["version"] for x in self.desired_msgs(c, d)]
            self.assertEqual(versions, [0, 1, 2])
            c.disconnect()

    def test_offline_change_delivered_latest_only(self):
        for version in (4, 5):
            d, secret = self.new_device("off%d" % version)
            c = self.subscribed_device(d, secret, version)
            self.wait_desired(c, d, 0)
            c.disconnect()
            harness.wait_for(lambda: not self.server.device(d)["online"], 5, msg="device offline")
            for i in range(1, 4):
                self.put_ok(d, {"step": i, "common": {"x": i}})
            # Reconnect with a clean session and subscribe: only the latest.
            c2 = self.subscribed_device(d, secret, version)
            msg = self.wait_desired(c2, d, 3)
            self.assertEqual(msg, {"version": 3, "state": {"step": 3, "common": {"x": 3}}})
            time.sleep(0.5)  # anything older would have arrived by now
            self.assertEqual([x["version"] for x in self.desired_msgs(c2, d)], [3],
                             "a reconnecting device gets only the latest version")
            c2.disconnect()

    # -- PUT / PATCH ------------------------------------------------------

    def test_patch_merge_semantics(self):
        d, _ = self.new_device("patch")
        self.put_ok(d, {"a": 1, "b": {"c": 2, "d": 3, "e": {"f": 4}}, "g": "x", "h": [1, 2]})
        st, js = self.patch(d, {"b": {"c": None, "e": {"g": 5}, "n": {"deep": True}},
                                "g": None, "h": [3], "i": {"j": None}})
        self.assertEqual(st, 200, js)
        want = {"a": 1, "b": {"d": 3, "e": {"f": 4, "g": 5}, "n": {"deep": True}},
                "h": [3], "i": {}}
        self.assertEqual(js["desired"], want, "RFC 7396: null deletes, objects merge, "
                                              "arrays and scalars replace")
        self.assertEqual(js["desired_version"], 2)
        # An object replaces a scalar and a scalar replaces an object.
        st, js = self.patch(d, {"a": {"z": 1}, "b": 7})
        self.assertEqual(st, 200, js)
        self.assertEqual(js["desired"], {"a": {"z": 1}, "b": 7, "h": [3], "i": {}})
        self.assertEqual(js["desired_version"], 3)
        # Deleting a key that is not there changes nothing (whether such a
        # no-op write counts as a version is not part of the contract).
        st, js = self.patch(d, {"missing": None})
        self.assertEqual(st, 200, js)
        self.assertEqual(js["desired"], {"a": {"z": 1}, "b": 7, "h": [3], "i": {}})
        self.assertIn(js["desired_version"], (3, 4))
        tw = self.twin(d)
        self.assertEqual(tw["desired"], js["desired"])
        self.assertEqual(tw["desired_version"], js["desired_version"])
        # PUT replaces the whole state.
        v = js["desired_version"]
        js = self.put_ok(d, {"only": True})
        self.assertEqual(js["desired"], {"only": True})
        self.assertEqual(js["desired_version"], v + 1)
        self.assertEqual(self.twin(d)["desired"], {"only": True})

    def test_body_must_be_object(self):
        d, _ = self.new_device("body")
        self.put_ok(d, {"keep": 1})
        for method in ("PUT", "PATCH"):
            for body in ([1, 2], "\"text\"", "42", "null", "{not json"):
                st, js = self.server.api(method, "/api/v1/devices/%s/twin/desired" % d, body)
                self.assertError(st, js, 400, "bad_request")
        tw = self.twin(d)
        self.assertEqual((tw["desired"], tw["desired_version"]), ({"keep": 1}, 1))

    def test_if_match(self):
        d, _ = self.new_device("ifm")
        v = self.put_ok(d, {"a": 1})["desired_version"]
        js = self.put_ok(d, {"a": 2}, headers={"If-Match": str(v)})
        self.assertEqual(js["desired_version"], v + 1)
        # Stale: 412, nothing changes.
        for method, body in (("PUT", {"a": 3}), ("PATCH", {"b": 1})):
            st, js = self.server.api(method, "/api/v1/devices/%s/twin/desired" % d, body,
                                     headers={"If-Match": str(v)})
            self.assertError(st, js, 412, "precondition_failed")
        # A future version is not current either.
        st, js = self.patch(d, {"b": 1}, headers={"If-Match": str(v + 5)})
        self.assertError(st, js, 412, "precondition_failed")
        tw = self.twin(d)
        self.assertEqual(tw["desired"], {"a": 2})
        self.assertEqual(tw["desired_version"], v + 1)
        # PATCH with the current version (as a quoted entity tag) works.
        st, js = self.patch(d, {"b": 1}, headers={"If-Match": '"%d"' % (v + 1)})
        self.assertEqual(st, 200, js)
        self.assertEqual(js["desired"], {"a": 2, "b": 1})
        self.assertEqual(js["desired_version"], v + 2)
        # Not a number: 400.
        st, js = self.put(d, {"a": 9}, headers={"If-Match": "abc"})
        self.assertError(st, js, 400, "bad_request")
        self.assertEqual(self.twin(d)["desired_version"], v + 2)

    # -- reported via MQTT --------------------------------------------------

    def test_reported_patches_and_delta(self):
        for version in (4, 5):
            d, secret = self.new_device("rep%d" % version)
            c = self.device_client(d, secret, version=version)
            c.connect_ok()
            t0 = now_ms()
            self.assertTrue(c.publish(self.reported_topic(d),
                                      {"fw": "1.0", "net": {"rssi": -70, "ssid": "x"}}, qos=1),
                            "no PUBACK for a reported patch")
            # The PUBACK means stored: visible at once.
            tw = self.twin(d)
            self.assertEqual(tw["reported"], {"fw": "1.0", "net": {"rssi": -70, "ssid": "x"}})
            self.assertEqual(tw["reported_version"], 1)
            self.assertTrue(t0 - CLOCK_SLACK_MS <= tw["reported_at"] <= now_ms() + CLOCK_SLACK_MS,
                            tw)
            self.assertEqual(tw["desired_version"], 0)
            self.assertEqual(tw["delta"], {})
            self.assertTrue(c.publish(self.reported_topic(d),
                                      {"net": {"ssid": None, "ch": 6}, "mode": "eco"}, qos=1))
            tw = self.twin(d)
            self.assertEqual(tw["reported"], {"fw": "1.0", "net": {"rssi": -70, "ch": 6},
                                              "mode": "eco"})
            self.assertEqual(tw["reported_version"], 2)
            # Desired differs in places: the delta lists exactly those.
            desired = {"fw": "1.0", "mode": "eco", "net": {"rssi": -70, "ch": 11},
                       "extra": True, "obj": {"k": 1}, "list": [1, 2]}
            self.put_ok(d, desired)
            tw = self.twin(d)
            self.assertEqual(tw["delta"], {"net": {"ch": 11}, "extra": True, "obj": {"k": 1},
                                           "list": [1, 2]})
            self.assertEqual(tw["reported_version"], 2, "a desired write leaves reported alone")
            # The device catches up: the delta empties.
            self.assertTrue(c.publish(self.reported_topic(d),
                                      {"net": {"ch": 11}, "extra": True, "obj": {"k": 1},
                                       "list": [1, 2], "only_reported": 5}, qos=1))
            tw = self.twin(d)
            self.assertEqual(tw["delta"], {}, "reported-only keys are not part of the delta")
            self.assertEqual(tw["reported_version"], 3)
            # A value of another type is a difference.
            self.assertTrue(c.publish(self.reported_topic(d), {"mode": 1, "obj": "flat"}, qos=1))
            self.assertEqual(self.twin(d)["delta"], {"mode": "eco", "obj": {"k": 1}})
            c.disconnect()

    def test_reported_malformed_v5_puback_0x99(self):
        d, secret = self.new_device("bad5")
        c = self.raw_device(d, secret, 5)
        self.assertEqual(c.do_publish_qos1(self.reported_topic(d), json.dumps({"ok": 1}),
                                           packet_id=1), RC5_SUCCESS)
        before = self.twin(d)
        self.assertEqual(before["reported_version"], 1)
        bad = [
            ("bad JSON", b'{"a": '),
            ("not JSON", b"hello"),
            ("empty", b""),
            ("array", b'[{"a": 1}]'),
            ("number", b"42"),
            ("string", b'"str"'),
            ("null", b"null"),
            ("too deep", json.dumps(nest(MAX_TWIN_DEPTH + 1)).encode()),
            ("too large", json.dumps({"blob": "x" * (MAX_TWIN_BYTES + 100)}).encode()),
        ]
        for i, (what, payload) in enumerate(bad, start=2):
            reason = c.do_publish_qos1(self.reported_topic(d), payload, packet_id=i)
            self.assertEqual(reason, RC5_PAYLOAD_FORMAT_INVALID,
                             "PUBACK reason for a %s reported payload" % what)
            after = self.twin(d)
            self.assertEqual(after["reported"], before["reported"], what)
            self.assertEqual(after["reported_version"], before["reported_version"], what)
            self.assertEqual(after["reported_at"], before["reported_at"], what)
        # The connection stays usable, and the limits are not lower than
        # documented: 16 levels and just under 64 KiB are fine.
        c.do_ping()
        self.assertEqual(c.do_publish_qos1(self.reported_topic(d),
                                           json.dumps(nest(MAX_TWIN_DEPTH)), packet_id=50),
                         RC5_SUCCESS, "a 16-level document is within the limit")
        self.assertEqual(c.do_publish_qos1(self.reported_topic(d),
                                           json.dumps({"blob": "y" * 30000}), packet_id=51),
                         RC5_SUCCESS)
        tw = self.twin(d)
        self.assertEqual(tw["reported_version"], 3)
        self.assertEqual(tw["reported"], {"ok": 1, "k": nest(MAX_TWIN_DEPTH - 1),
                                          "blob": "y" * 30000})

    def test_reported_malformed_v311_not_stored(self):
        d, secret = self.new_device("bad4")
        c = self.raw_device(d, secret, 4)
        self.assertEqual(c.do_publish_qos1(self.reported_topic(d), b'{"ok": 2}', packet_id=1), 0)
        for i, payload in enumerate([b"{oops", b"[1]", json.dumps(nest(20)).encode()], start=2):
            self.assertEqual(c.do_publish_qos1(self.reported_topic(d), payload, packet_id=i), 0)
        self.assertTrue(c.is_open(0.2), "a bad reported payload must not close the connection")
        tw = self.twin(d)
        self.assertEqual((tw["reported"], tw["reported_version"]), ({"ok": 2}, 1))

    # -- API limits and errors -----------------------------------------------

    def test_desired_limits_413(self):
        d, _ = self.new_device("lim")
        self.put_ok(d, {"a": "x" * 40000})
        cases = [
            ("PUT", {"blob": "x" * (MAX_TWIN_BYTES + 10)}),
            ("PUT", nest(MAX_TWIN_DEPTH + 1)),
            ("PATCH", {"blob": "x" * (MAX_TWIN_BYTES + 10)}),
            ("PATCH", nest(MAX_TWIN_DEPTH + 1)),
            # Fine alone, too large once merged.
            ("PATCH", {"b": "y" * 40000}),
        ]
        for method, body in cases:
            st, js = self.server.api(method, "/api/v1/devices/%s/twin/desired" % d, body)
            self.assertError(st, js, 413, "payload_too_large")
            tw = self.twin(d)
            self.assertEqual(tw["desired"], {"a": "x" * 40000})
            self.assertEqual(tw["desired_version"], 1)
        self.put_ok(d, nest(MAX_TWIN_DEPTH))

    def test_unknown_device_404(self):
        path = "/api/v1/devices/no-such-device/twin"
        st, js = self.server.api("GET", path)
        self.assertError(st, js, 404, "not_found")
        for method in ("PUT", "PATCH"):
            st, js = self.server.api(method, path + "/desired", {"a": 1})
            self.assertError(st, js, 404, "not_found")

    # -- lifetime -----------------------------------------------------------

    def test_twin_survives_restart(self):
        d, secret = self.new_device("rst")
        self.put_ok(d, {"a": 1, "n": {"b": 2}})
        st, _ = self.patch(d, {"n": {"c": 3}})
        self.assertEqual(st, 200)
        c = self.device_client(d, secret)
        c.connect_ok()
        self.assertTrue(c.publish(self.reported_topic(d), {"a": 1, "n": {"b": 0}}, qos=1))
        c.disconnect()
        before = self.twin(d)
        self.assertEqual(before["desired_version"], 2)
        self.assertEqual(before["reported_version"], 1)
        self.server.restart()
        after = self.twin(d)
        self.assertEqual(after, before, "the twin must survive a restart as it was")
        self.assertEqual(after["delta"], {"n": {"b": 2, "c": 3}})
        c2 = self.subscribed_device(d, secret)
        self.assertEqual(self.wait_desired(c2, d, 2),
                         {"version": 2, "state": {"a": 1, "n": {"b": 2, "c": 3}}})
        c2.disconnect()
        js = self.put_ok(d, {"after": "restart"})
        self.assertEqual(js["desired_version"], 3, "versions continue after a restart")

    def test_delete_device_removes_twin(self):
        d, secret = self.new_device("del")
        self.put_ok(d, {"a": 1})
        self.put_ok(d, {"a": 2})
        c = self.device_client(d, secret)
        c.connect_ok()
        self.assertTrue(c.publish(self.reported_topic(d), {"r": 1}, qos=1))
        c.disconnect()
        st, _ = self.server.api("DELETE", "/api/v1/devices/%s" % d)
        self.assertIn(st, (200, 204))
        st, js = self.server.api("GET", "/api/v1/devices/%s/twin" % d)
        self.assertError(st, js, 404, "not_found")
        secret2 = self.server.create_device(d)
        tw = self.twin(d)
        self.assertEqual(tw, {"desired": {}, "desired_version": 0, "desired_at": None,
                              "reported": {}, "reported_version": 0, "reported_at": None,
                              "delta": {}}, "a re-created device starts with an empty twin")
        c2 = self.subscribed_device(d, secret2)
        self.assertEqual(self.wait_desired(c2, d, 0), {"version": 0, "state": {}})
        c2.disconnect()
        # The re-created twin also starts over after a restart (nothing of
        # the old one was left in the database).
        self.server.restart()
        tw = self.twin(d)
        self.assertEqual((tw["desired"], tw["desired_version"], tw["reported_version"]),
                         ({}, 0, 0))


if __name__ == "__main__":
    harness.main()
