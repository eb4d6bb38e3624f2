"""Malformed packets over raw sockets. Each one must close the offending
connection (MQTT 5: optionally after a DISCONNECT / CONNACK with an error
reason) while a well-behaved Paho client, connected throughout, keeps
publishing QoS 1 telemetry; at the end the server is alive and its sanitizer
log is clean."""

import json
import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw as R  # noqa: E402
from harness import HOST  # noqa: E402

MAX_PACKET = 4096
CLOSE_TIMEOUT = 5.0

# (name, version, after a good CONNECT?, factory(device id, secret) -> bytes,
#  CONNACK codes allowed if the server answers a bad CONNECT with one). CONNECT
#  cases carry the device's real credentials so that the malformation is the
#  only fault.

CASES = [
    # Remaining length with a fifth continuation byte.
    ("bad_remaining_length_first", 4, False, lambda d, s: b"\x10\xff\xff\xff\xff\x7f", ()),
    ("bad_remaining_length_after_connect", 4, True, lambda d, s: b"\x30\xff\xff\xff\xff\x7f", ()),
    ("bad_remaining_length_v5", 5, True, lambda d, s: b"\x82\xff\xff\xff\xff\x7f", ()),
    # First packet is not CONNECT.
    ("first_packet_pingreq", 4, False, lambda d, s: b"\xc0\x00", ()),
    ("first_packet_publish", 4, False,
     lambda d, s: R.publish("devices/%s/telemetry" % d, b'{"x":1}', qos=0), ()),
    ("first_packet_subscribe", 5, False, lambda d, s: R.subscribe(1, [("a", 0)], version=5),
     (0x81, 0x82)),
    # Invalid UTF-8 / forbidden characters in strings.
    ("invalid_utf8_topic_v311", 4, True,
     lambda d, s: R.publish(b"devices/" + d.encode() + b"/\xc3\x28", b"{}", qos=0), ()),
    ("invalid_utf8_topic_v5", 5, True,
     lambda d, s: R.publish(b"devices/" + d.encode() + b"/\xc3\x28", b"{}", qos=1, version=5), ()),
    ("nul_in_topic", 4, True,
     lambda d, s: R.publish(b"devices/" + d.encode() + b"/a\x00b", b"{}", qos=0), ()),
    ("surrogate_in_topic", 4, True,
     lambda d, s: R.publish(b"devices/" + d.encode() + b"/\xed\xa0\x80", b"{}", qos=0), ()),
    ("invalid_utf8_client_id", 4, False,
     lambda d, s: R.connect(b"\xc3\x28", "u", "p", version=4), (0x02, 0x04, 0x05)),
    ("invalid_utf8_subscribe_filter", 4, True,
     lambda d, s: R.subscribe(1, [(b"devices/" + d.encode() + b"/\xff", 1)]), ()),
    # Reserved flags.
    ("subscribe_reserved_flags_0x80", 4, True,
     lambda d, s: R.subscribe(1, [("devices/%s/inbox" % d, 1)], first_byte=0x80), ()),
    ("subscribe_reserved_flags_0x80_v5", 5, True,
     lambda d, s: R.subscribe(1, [("devices/%s/inbox" % d, 1)], version=5, first_byte=0x80), ()),
    ("connect_reserved_flag_bit0", 4, False,
     lambda d, s: R.connect(d, d, s, version=4, flags_or=0x01), ()),
    ("connect_reserved_flag_bit0_v5", 5, False,
     lambda d, s: R.connect(d, d, s, version=5, flags_or=0x01), (0x81, 0x82)),
    ("pingreq_reserved_flags", 4, True, lambda d, s: b"\xc1\x00", ()),
    ("subscribe_options_reserved_bits_v5", 5, True,
     lambda d, s: R.subscribe(1, [("devices/%s/inbox" % d, 0xC1)], version=5), ()),
    # QoS 3.
    ("publish_qos3", 4, True,
     lambda d, s: R.publish("devices/%s/telemetry" % d, b'{"x":1}', first_byte=0x36, packet_id=1), ()),
    ("publish_qos3_v5", 5, True,
     lambda d, s: R.publish("devices/%s/telemetry" % d, b'{"x":1}', first_byte=0x36, packet_id=1,
                         version=5), ()),
    ("will_qos3", 4, False,
     lambda d, s: R.connect(d, d, s, will=dict(topic="devices/%s/status" % d, qos=3)), ()),
    # Protocol rules.
    ("second_connect", 4, True, lambda d, s: R.connect(d, d, s), ()),
    ("publish_empty_topic", 4, True, lambda d, s: R.publish("", b"{}", qos=0), ()),
    ("publish_wildcard_topic", 4, True,
     lambda d, s: R.publish("devices/%s/+" % d, b"{}", qos=0), ()),
    ("publish_qos1_packet_id_0", 4, True,
     lambda d, s: R.publish("devices/%s/telemetry" % d, b'{"x":1}', qos=1, packet_id=0), ()),
    ("subscribe_no_filters", 4, True, lambda d, s: R.packet(0x82, R.u16(1)), ()),
    ("reserved_packet_type_0", 4, True, lambda d, s: b"\x00\x00", ()),
    ("auth_packet_on_v311", 4, True, lambda d, s: b"\xf0\x00", ()),
    ("topic_alias_0_v5", 5, True,
     lambda d, s: R.publish("devices/%s/telemetry" % d, b"{}", qos=0, version=5,
                         properties=[(R.PROP_TOPIC_ALIAS, 0)]), ()),
    ("password_without_username_v311", 4, False,
     lambda d, s: R.packet(0x10, R.mstr("MQTT") + bytes([4, 0x42]) + R.u16(60) + R.mstr(d)
                        + R.mstr("pw")), (0x04, 0x05)),
    # Truncated: the client id claims 200 bytes, 3 follow.
    ("connect_string_overflows_packet", 4, False,
     lambda d, s: R.packet(0x10, R.mstr("MQTT") + bytes([4, 0x02]) + R.u16(60) + R.u16(200) + b"abc"),
     ()),
    ("publish_topic_overflows_packet", 4, True,
     lambda d, s: R.packet(0x30, R.u16(500) + b"devices/"), ()),
    # Bad protocol name / level.
    ("bad_protocol_level_3", 4, False, lambda d, s: R.connect(d, d, s, version=3), (0x01, 0x84)),
    ("bad_protocol_level_6", 4, False, lambda d, s: R.connect(d, d, s, version=6), (0x01, 0x84)),
    ("bad_protocol_name_v311", 4, False,
     lambda d, s: R.connect(d, d, s, version=4, protocol_name="MQTX"), (0x01, 0x84)),
    ("bad_protocol_name_v5", 5, False,
     lambda d, s: R.connect(d, d, s, version=5, protocol_name="MQTX"), (0x84, 0x01)),
]

# Cases where a CONNACK is required (not just allowed) before the close.
NEED_CONNACK = {"bad_protocol_level_3", "bad_protocol_level_6"}


def _check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Publisher(threading.Thread):
    """The well-behaved client: QoS 1 telemetry every 50 ms, each with a
    distinct device ts, counting PUBACKs."""

    def __init__(self, client, device_id):
        super().__init__(daemon=True)
        self.client = client
        self.topic = "devices/%s/telemetry" % device_id
        self.stop = threading.Event()
        self.sent = []  # (mid, monotonic time sent)
        self.seq = 0
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            self.seq += 1
            mid = self.client.publish_nowait(
                self.topic, {"alive": self.seq, "ts": 1650000000000 + self.seq})
            if mid is None:
                self.errors.append("publish %d failed (not connected?)" % self.seq)
            else:
                self.sent.append((mid, time.monotonic()))
            self.stop.wait(0.05)

    def acked(self):
        return sum(1 for mid, _ in list(self.sent) if self.client.is_acked(mid))

    def overdue(self, age=5.0):
        now = time.monotonic()
        return [mid for mid, t in list(self.sent)
                if now - t > age and not self.client.is_acked(mid)]


class MalformedTest(harness.ServerTestCase):
    server_config = "max_packet_size = %d\n" % MAX_PACKET
    sync_seq = 0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.watch_id = harness.uid("watch")
            secret = cls.server.create_device(cls.watch_id)
            cls.watch = cls.server.mqtt(cls.watch_id, cls.watch_id, secret, keepalive=30)
            cls.watch.connect_ok()
            cls.pub = Publisher(cls.watch, cls.watch_id)
            cls.pub.start()
        except Exception:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.pub.stop.set()
            cls.pub.join(5)
            cls.watch._wait(lambda: cls.pub.acked() == len(cls.pub.sent), 5)
            acked = cls.pub.acked()
            cls.watch.disconnect()
            _check(not cls.pub.errors, cls.pub.errors[:5])
            _check(cls.watch.disconnects == 1, "the good client was disconnected during the run")
            _check(acked == len(cls.pub.sent), "%d of %d acked" % (acked, len(cls.pub.sent)))
            pts = cls.server.all_points(cls.watch_id, {"metric": "alive"})
            _check(len(pts) == acked, "stored %d points, %d acknowledged" % (len(pts), acked))
            st, js = cls.server.api("GET", "/healthz", token=None)
            _check(st == 200, "server not healthy at the end")
        finally:
            super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.assertFalse(self.watch.disconnected, "the well-behaved client was disconnected")
        self.acked_before = self.pub.acked()

    def tearDown(self):
        # The well-behaved client is unaffected: still connected, its
        # publishes are acknowledged, none overdue.
        deadline = time.monotonic() + 5
        while self.pub.acked() <= self.acked_before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreater(self.pub.acked(), self.acked_before,
                           "no QoS 1 PUBACK for the good client during this case")
        self.assertEqual(self.pub.overdue(), [], "PUBACKs overdue for the good client")
        self.assertFalse(self.watch.disconnected, "the good client was disconnected")
        self.assertTrue(self.server.alive(), "droverd died\n" + self.server.logs())
        topic = "devices/%s/telemetry" % self.watch_id
        MalformedTest.sync_seq += 1
        self.assertTrue(self.watch.publish(topic, {"sync": 1,
                                                   "ts": 1600000000000 + self.sync_seq}),
                        "synchronous QoS 1 publish of the good client failed")

    def assert_closed(self, conn, version, connack_codes=(), need_connack=False):
        closed, pkts = conn.wait_closed(CLOSE_TIMEOUT)
        self.assertTrue(closed, "server did not close the connection within %.0fs (got %r)"
                        % (CLOSE_TIMEOUT, pkts))
        saw_connack = False
        for p in pkts:
            if p.type == R.CONNACK:
                saw_connack = True
                _, rc, _ = R.parse_connack(p, version)
                self.assertIn(rc, connack_codes or (), "CONNACK 0x%02x" % rc)
            elif p.type == R.DISCONNECT:
                self.assertEqual(version, 5, "DISCONNECT sent to a 3.1.1 client")
                reason = R.parse_disconnect(p, version)
                self.assertGreaterEqual(reason, 0x80, "DISCONNECT reason 0x%02x" % reason)
            elif p.type in (R.PUBACK, R.SUBACK):
                # An answer to the malformed packet as if it were fine.
                self.fail("server accepted the malformed packet: %r" % p)
        if need_connack:
            self.assertTrue(saw_connack, "no CONNACK before the close")

    def run_case(self, name, version, after_connect, make, connack_codes):
        d, secret = self.new_device("mal")
        c = self.raw(version)
        if after_connect:
            _, rc, _ = c.do_connect(d, d, secret)
            self.assertEqual(rc, 0)
        c.try_send(make(d, secret))
        self.assert_closed(c, version, connack_codes, name in NEED_CONNACK)
        # The device itself can connect again on a new connection.
        c2, _, _ = R.connect_ok(HOST, self.server.mqtt_port, d, d, secret, version=version)
        c2.do_ping()
        c2.do_disconnect()

    # -- cases that need more than one packet ------------------------------

    def test_oversized_publish(self):
        d, secret = self.new_device("big")
        c = self.raw(5)
        _, rc, props = c.do_connect(d, d, secret)
        self.assertEqual(rc, 0)
        if R.PROP_MAXIMUM_PACKET_SIZE in props:
            self.assertLessEqual(props[R.PROP_MAXIMUM_PACKET_SIZE], MAX_PACKET)
        body = R.mstr("devices/%s/telemetry" % d) + R.u16(1) + R.props([])
        body += json.dumps({"pad": "x" * (MAX_PACKET * 3)}).encode()
        pkt = bytes([0x32]) + R.varint(len(body)) + body
        c.try_send(pkt[:64])  # the header alone already says too big
        time.sleep(0.1)
        c.try_send(pkt[64:])
        self.assert_closed(c, 5)
        self.assertEqual(self.server.telemetry(d)["points"], [])

    def test_oversized_connect_first(self):
        c = self.raw(4)
        c.try_send(b"\x10" + R.varint(MAX_PACKET * 50) + b"\x00\x04MQTT\x04\x02\x00\x3c")
        self.assert_closed(c, 4)

    def test_oversized_header_only_v311(self):
        # Remaining length far above the limit, body never sent: the server
        # must not wait for (or allocate) it.
        d, secret = self.new_device("hdr")
        c = self.raw(4)
        _, rc, _ = c.do_connect(d, d, secret)
        self.assertEqual(rc, 0)
        c.try_send(b"\x30" + R.varint(200 * 1024 * 1024))
        self.assert_closed(c, 4)

    def test_fragmented_good_packets_still_work(self):
        # Control: a valid CONNECT and PUBLISH sent one byte at a time are
        # fine (the server must not treat fragmentation as malformed).
        d, secret = self.new_device("frag")
        c = self.raw(4)
        for b in R.connect(d, d, secret):
            c.send(bytes([b]))
        _, rc, _ = R.parse_connack(c.read(5), 4)
        self.assertEqual(rc, 0)
        for b in R.publish("devices/%s/telemetry" % d, json.dumps({"f": 1}), qos=1, packet_id=3):
            c.send(bytes([b]))
        pid, _ = R.parse_puback(c.read_type(R.PUBACK, 5), 4)
        self.assertEqual(pid, 3)
        c.do_disconnect()

    def test_garbage_flood_then_close(self):
        seed = int.from_bytes(os.urandom(4), "big")
        rnd = random.Random(seed)
        c = self.raw(4)
        c.try_send(bytes(rnd.getrandbits(8) for _ in range(64 * 1024)))
        with self.subTest(seed=seed):
            self.assert_closed(c, 4, (0x01, 0x02, 0x04, 0x05, 0x84, 0x81, 0x82))


def _make_test(case):
    name, version, after_connect, make, codes = case

    def test(self):
        self.run_case(name, version, after_connect, make, codes)
    test.__name__ = "test_" + name
    return test


for _case in CASES:
    setattr(MalformedTest, "test_" + _case[0], _make_test(_case))


if __name__ == "__main__":
    harness.main()
