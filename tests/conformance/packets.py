"""Shared pieces of the MQTT conformance tests: exact packet builders for
what the server must answer, and ConfTestCase, a droverd started with
tests/conformance/paho.conf plus raw-socket helpers that read whole
packets back as bytes.

The encoders reuse tests/integration/mqttraw.py (written from the OASIS
specs, independent of src/mqtt); this module only adds the packets that
file lacks (PUBREC/PUBREL/PUBCOMP, AUTH, UNSUBSCRIBE with bad flags) and the
expected server replies.

Conventions of the tests:
- every test method's name or docstring carries the normative statement(s)
  it checks, e.g. [MQTT-3.1.2-3]; a clause whose number differs between the
  specs is given as "[MQTT-x] (3.1.1) / [MQTT-y] (5.0)";
- replies are compared byte for byte where the spec fixes them; where the
  spec allows several encodings (an MQTT 5 acknowledgement with reason
  0x00 may omit the reason code and the property length) every allowed
  encoding is accepted, and nothing else;
- every client id and topic is unique to its test (ids(), topic()), so the
  tests of a class share one server without seeing each other's traffic.
"""

import os
import struct
import sys
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
IT_DIR = os.path.join(os.path.dirname(HERE), "integration")
if IT_DIR not in sys.path:
    sys.path.insert(0, IT_DIR)

import harness  # noqa: E402
import mqttraw as R  # noqa: E402
from harness import HOST  # noqa: E402
from mqttraw import (V311, V5, Closed, Timeout, ProtocolError,  # noqa: E402,F401
                     CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP,
                     SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP,
                     DISCONNECT, AUTH)

PAHO_CONF = os.path.join(HERE, "paho.conf")

# What paho.conf sets (and therefore what the server announces).
RECEIVE_MAXIMUM = 64
TOPIC_ALIAS_MAX = 16
MAX_PACKET_SIZE = 1048576
MAX_KEEPALIVE = 60
MAX_SUBSCRIPTIONS = 64

# MQTT 5 property ids beyond those mqttraw names.
PROP_RESPONSE_TOPIC = 0x08
PROP_CORRELATION_DATA = 0x09
PROP_SUBSCRIPTION_ID = 0x0B
PROP_ASSIGNED_CLIENT_ID = 0x12
PROP_SERVER_KEEPALIVE = 0x13
PROP_AUTH_METHOD = 0x15
PROP_AUTH_DATA = 0x16

# Subscription options (MQTT 5 §3.8.3.1).
NO_LOCAL = 0x04
RETAIN_AS_PUBLISHED = 0x08


def rh(n):
    """Retain Handling option bits."""
    return (n & 3) << 4


# ---------------------------------------------------------------- builders

varint = R.varint
u16 = R.u16
u32 = R.u32
mstr = R.mstr
props = R.props
packet = R.packet
connect = R.connect
publish = R.publish
subscribe = R.subscribe
puback = R.puback
pingreq = R.pingreq


def ack(ptype, packet_id, version=V311, reason=0, with_reason=False):
    """PUBACK/PUBREC/PUBREL/PUBCOMP (PUBREL carries flags 0010)."""
    fb = (ptype << 4) | (0x02 if ptype == PUBREL else 0)
    body = u16(packet_id)
    if version == V5 and (reason or with_reason):
        body += bytes([reason])
    return packet(fb, body)


def pubrec(packet_id, version=V311, reason=0):
    return ack(PUBREC, packet_id, version, reason)


def pubrel(packet_id, version=V311, reason=0, first_byte=None):
    b = ack(PUBREL, packet_id, version, reason)
    if first_byte is not None:
        b = bytes([first_byte]) + b[1:]
    return b


def pubcomp(packet_id, version=V311, reason=0):
    return ack(PUBCOMP, packet_id, version, reason)


def unsubscribe(packet_id, topics, version=V311, first_byte=0xA2):
    b = R.unsubscribe(packet_id, topics, version=version)
    return bytes([first_byte]) + b[1:]


def auth(reason=0, properties=None):
    return packet(0xF0, bytes([reason]) + props(properties or []))


def disconnect(version=V311, reason=0, properties=None):
    return R.disconnect(version, reason, properties)


# ------------------------------------------------- expected server replies

def connack311(session_present, rc):
    return bytes([0x20, 0x02, 1 if session_present else 0, rc])


def connack5_refused(reason):
    """A refusing MQTT 5 CONNACK without properties."""
    return bytes([0x20, 0x03, 0x00, reason, 0x00])


def disconnect5(reason):
    """A server DISCONNECT with a reason code and no properties."""
    return bytes([0xE0, 0x01, reason])


def acks_allowed(ptype, packet_id, version, reason=0):
    """Every encoding of an acknowledgement the spec allows. 3.1.1 has one.
    MQTT 5 (§3.4.2.1): with reason 0x00 the reason code may be omitted, and
    the property length may be omitted whenever there are no properties."""
    fb = (ptype << 4) | (0x02 if ptype == PUBREL else 0)
    pid = u16(packet_id)
    if version != V5:
        return {bytes([fb, 2]) + pid}
    out = {bytes([fb, 3]) + pid + bytes([reason]),
           bytes([fb, 4]) + pid + bytes([reason, 0])}
    if reason == 0:
        out.add(bytes([fb, 2]) + pid)
    return out


def suback(packet_id, codes, version=V311):
    body = u16(packet_id)
    if version == V5:
        body += b"\x00"
    return packet(0x90, body + bytes(codes))


def unsuback(packet_id, codes=(), version=V311):
    """3.1.1 UNSUBACK has no payload; MQTT 5 one reason code per filter."""
    body = u16(packet_id)
    if version == V5:
        body += b"\x00" + bytes(codes)
    return packet(0xB0, body)


def to_bytes(p):
    """A received mqttraw.Packet back to its wire form (the server encodes
    the remaining length in the fewest bytes, [MQTT-1.5.5-1])."""
    return bytes([(p.type << 4) | p.flags]) + varint(len(p.body)) + bytes(p.body)


def props_list(pk):
    """The MQTT 5 properties of a received PUBLISH in wire order, as a list
    of (id, value): repeated ids (user properties, subscription ids) are
    all kept."""
    body = pk.body
    n = struct.unpack_from("!H", body, 0)[0]
    pos = 2 + n + (2 if (pk.flags >> 1) & 3 else 0)
    plen, pos = R.decode_varint(body, pos)
    end = pos + plen
    out = []
    while pos < end:
        pid, pos = R.decode_varint(body, pos)
        kind = R._PROP_TYPES.get(pid)
        if kind == "byte":
            val = body[pos]
            pos += 1
        elif kind == "u16":
            val = struct.unpack_from("!H", body, pos)[0]
            pos += 2
        elif kind == "u32":
            val = struct.unpack_from("!I", body, pos)[0]
            pos += 4
        elif kind == "varint":
            val, pos = R.decode_varint(body, pos)
        elif kind in ("str", "bin"):
            k = struct.unpack_from("!H", body, pos)[0]
            val = bytes(body[pos + 2:pos + 2 + k])
            pos += 2 + k
        elif kind == "pair":
            k = struct.unpack_from("!H", body, pos)[0]
            key = bytes(body[pos + 2:pos + 2 + k])
            pos += 2 + k
            k = struct.unpack_from("!H", body, pos)[0]
            val = (key, bytes(body[pos + 2:pos + 2 + k]))
            pos += 2 + k
        else:
            raise ProtocolError("unknown property 0x%02x" % pid)
        out.append((pid, val))
    if pos != end:
        raise ProtocolError("property length mismatch")
    return out


def sub_ids(pk):
    """Every Subscription Identifier of a received PUBLISH, in order."""
    return [v for k, v in props_list(pk) if k == PROP_SUBSCRIPTION_ID]


def hexs(b):
    return " ".join("%02x" % x for x in b) if b else "(nothing)"


def describe(seq):
    """Packets or byte strings, for assertion messages."""
    out = []
    for x in seq:
        out.append(hexs(x if isinstance(x, (bytes, bytearray)) else to_bytes(x)))
    return "[" + "; ".join(out) + "]" if out else "(nothing)"


# ---------------------------------------------------------------- test case

def read_conf():
    with open(PAHO_CONF) as f:
        return f.read()


class ConfTestCase(harness.ServerTestCase):
    """droverd with paho.conf (anonymous applications outside devices/)."""

    server_config = read_conf()
    extra_config = ""

    @classmethod
    def setUpClass(cls):
        if cls.extra_config:
            cls.server_config = read_conf() + "\n" + cls.extra_config
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        # The last test's sockets were closed by its cleanups a moment ago:
        # let droverd see them go before it is stopped (a stop while a
        # server-closed connection lingers is its own test in
        # tests/integration/test_abuse.py, ShutdownLingerTest).
        time.sleep(0.3)
        super().tearDownClass()

    # -- names ---------------------------------------------------------

    def uid(self, tag="c"):
        """A client id unique to this run, valid for every server (1..23
        characters of [0-9a-zA-Z] is what [MQTT-3.1.3-5] guarantees)."""
        return ("%s%s" % (tag, uuid.uuid4().hex))[:23]

    def topic(self, *levels):
        """conf/<unique>/<levels...>, created once per test."""
        if not hasattr(self, "_topic_root"):
            self._topic_root = "conf/%s/%s" % (self._testMethodName[5:30], uuid.uuid4().hex[:8])
        return "/".join((self._topic_root,) + tuple(levels))

    # -- connections ---------------------------------------------------

    def open(self, version=V311):
        """A raw TCP connection, closed at the end of the test."""
        return self.raw(version)

    def client(self, client_id=None, version=V311, clean=True, keepalive=60,
               properties=None, will=None, username=None, password=None,
               expect_present=None):
        """Connects and checks the CONNACK is a success. Returns the Conn;
        conn.connack = (session_present, reason, props), conn.client_id."""
        c = self.open(version)
        cid = self.uid() if client_id is None else client_id
        c.send(connect(cid, username, password, version=version, keepalive=keepalive,
                       clean=clean, will=will, properties=properties))
        try:
            p = c.read(5.0)
        except (Closed, Timeout) as e:
            self.fail("no CONNACK for %r (v%d): %s" % (cid, version, e))
        sp, rc, pr = R.parse_connack(p, version)
        self.assertEqual(rc, 0, "CONNACK refused %r: %s" % (cid, hexs(to_bytes(p))))
        if version == V311:
            self.assertEqual(to_bytes(p), connack311(sp, 0))
        if expect_present is not None:
            self.assertEqual(sp, 1 if expect_present else 0,
                             "session present for %r: %s" % (cid, hexs(to_bytes(p))))
        c.connack = (sp, rc, pr)
        c.client_id = cid
        return c

    def sub(self, c, filters, packet_id=1, codes=None, properties=None):
        """SUBSCRIBE and check the SUBACK bytes exactly. filters: [(filter,
        options)]; codes default to the requested QoS of each."""
        if codes is None:
            codes = [o & 3 for _, o in filters]
        body = u16(packet_id)
        if c.version == V5:
            body += props(properties or [])
        for f, o in filters:
            body += mstr(f) + bytes([o])
        c.send(packet(0x82, body))
        self.expect(c, suback(packet_id, codes, c.version), "SUBACK")

    # -- reading -------------------------------------------------------

    def read_bytes(self, c, timeout=5.0, what="a packet"):
        try:
            return to_bytes(c.read(timeout))
        except Timeout:
            self.fail("timed out waiting for %s" % what)
        except Closed:
            self.fail("connection closed while waiting for %s" % what)

    def read_packet(self, c, timeout=5.0, what="a packet"):
        try:
            return c.read(timeout)
        except Timeout:
            self.fail("timed out waiting for %s" % what)
        except Closed:
            self.fail("connection closed while waiting for %s" % what)

    def expect(self, c, expected, what="packet", timeout=5.0):
        """The next packet is exactly `expected` (bytes) or one of a set."""
        got = self.read_bytes(c, timeout, what)
        allowed = expected if isinstance(expected, (set, frozenset, list, tuple)) else {expected}
        if got not in allowed:
            self.fail("%s: got %s, expected %s" % (what, hexs(got),
                                                   " or ".join(sorted(hexs(a) for a in allowed))))
        return got

    def expect_ack(self, c, ptype, packet_id, reason=0, what=None):
        return self.expect(c, acks_allowed(ptype, packet_id, c.version, reason),
                           what or "%s %d" % (R.NAMES[ptype], packet_id))

    def expect_publish(self, c, topic, payload, qos=0, retain=False, dup=False,
                       packet_id=None, properties=None, what="PUBLISH", timeout=5.0):
        """The next packet is exactly this PUBLISH. The packet id of QoS > 0
        is the server's to choose ([MQTT-2.3.1-2]): any non-zero id is taken
        (or the given one required), the rest compared byte for byte.
        Returns the packet id."""
        p = self.read_packet(c, timeout, what)
        got = to_bytes(p)
        pid = packet_id
        if p.type == PUBLISH and qos and pid is None and len(p.body) >= 2:
            n = struct.unpack_from("!H", p.body, 0)[0]
            if len(p.body) >= 4 + n:
                pid = struct.unpack_from("!H", p.body, 2 + n)[0]
                self.assertNotEqual(pid, 0, "[MQTT-2.3.1-1] PUBLISH QoS %d with packet id 0" % qos)
        exp = publish(topic, payload, qos=qos, packet_id=pid, version=c.version,
                      properties=properties, retain=retain, dup=dup)
        if got != exp:
            self.fail("%s: got %s\n  expected %s" % (what, hexs(got), hexs(exp)))
        return pid

    def expect_silence(self, c, wait=0.5, what="nothing"):
        """No packet arrives within wait seconds (and the connection stays
        open)."""
        try:
            p = c.read(wait)
        except Timeout:
            return
        except Closed:
            self.fail("connection closed; expected it open and %s" % what)
        self.fail("expected %s, got %s" % (what, hexs(to_bytes(p))))

    def expect_closed(self, c, allowed=(b"",), timeout=5.0, what="close"):
        """The server closes the connection within timeout, having sent
        exactly one of the `allowed` byte strings first (b"" = nothing)."""
        closed, got = c.wait_closed(timeout)
        data = b"".join(to_bytes(p) for p in got) + bytes(c.buf)
        if not closed:
            self.fail("%s: connection still open after %.1fs (received %s)"
                      % (what, timeout, hexs(data)))
        allowed = set(allowed)
        if data not in allowed:
            self.fail("%s: before closing the server sent %s, expected %s" % (
                what, hexs(data), " or ".join(sorted(hexs(a) for a in allowed))))
        return data

    # -- a pair of clients proving the server still works ---------------

    def witness(self):
        """A subscriber and a publisher (3.1.1, QoS 1) on a topic of their
        own; call check_witness(w) to prove a round trip still works."""
        t = self.topic("witness", uuid.uuid4().hex[:6])
        s = self.client()
        self.sub(s, [(t, 1)])
        p = self.client()
        return {"sub": s, "pub": p, "topic": t, "n": 0}

    def check_witness(self, w):
        w["n"] += 1
        n = w["n"]
        payload = ("alive %d" % n).encode()
        w["pub"].send(publish(w["topic"], payload, qos=1, packet_id=n))
        self.expect(w["pub"], ack(PUBACK, n), "witness PUBACK")
        pid = self.expect_publish(w["sub"], w["topic"], payload, qos=1,
                                  what="witness delivery")
        w["sub"].send(puback(pid))

    def settle(self, seconds=0.2):
        time.sleep(seconds)


def main():
    unittest.main(verbosity=2)
