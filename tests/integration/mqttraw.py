"""Raw MQTT 3.1.1 / 5.0 packets over a plain socket.

The integration tests use Eclipse Paho for well-behaved clients. Paho cannot
send broken packets, go silent on purpose or show MQTT 5 PUBACK reason codes
(1.6.x drops them), so this module encodes and decodes just enough of the
protocol by hand. It is deliberately independent of the server's codec: it
is written from the OASIS specs, not from src/mqtt.

Every read takes a timeout; nothing here can block forever.
"""

import select
import socket
import struct
import time

# Packet types (upper nibble of the fixed header).
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
    6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK",
    10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
    14: "DISCONNECT", 15: "AUTH",
}

V311 = 4
V5 = 5

# MQTT 5 property identifiers used by the tests, with their wire types.
PROP_PAYLOAD_FORMAT = 0x01          # byte
PROP_MESSAGE_EXPIRY = 0x02          # four-byte int
PROP_CONTENT_TYPE = 0x03            # utf-8 string
PROP_SESSION_EXPIRY = 0x11          # four-byte int
PROP_RECEIVE_MAXIMUM = 0x21         # two-byte int
PROP_MAXIMUM_PACKET_SIZE = 0x27     # four-byte int
PROP_TOPIC_ALIAS_MAXIMUM = 0x22     # two-byte int
PROP_TOPIC_ALIAS = 0x23             # two-byte int
PROP_REASON_STRING = 0x1F           # utf-8 string
PROP_WILL_DELAY = 0x18              # four-byte int
PROP_USER_PROPERTY = 0x26           # string pair

_PROP_TYPES = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin",
    0x0B: "varint", 0x11: "u32", 0x12: "str", 0x13: "u16", 0x15: "str",
    0x16: "bin", 0x17: "byte", 0x18: "u32", 0x19: "byte", 0x1A: "str",
    0x1C: "str", 0x1F: "str", 0x21: "u16", 0x22: "u16", 0x23: "u16",
    0x24: "byte", 0x25: "byte", 0x26: "pair", 0x27: "u32", 0x28: "byte",
    0x29: "byte", 0x2A: "byte",
}


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


class Timeout(Exception):
    """No complete packet arrived before the deadline."""


class ProtocolError(Exception):
    """The peer sent something this decoder does not accept."""


# ---------------------------------------------------------------- encoding

def varint(n):
    if n < 0 or n > 268435455:
        raise ValueError("varint out of range: %d" % n)
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def u16(n):
    return struct.pack("!H", n)


def u32(n):
    return struct.pack("!I", n)


def mstr(s):
    """Length-prefixed UTF-8 string (bytes are sent as they are)."""
    b = s if isinstance(s, (bytes, bytearray)) else s.encode("utf-8")
    return u16(len(b)) + bytes(b)


def props(items=()):
    """Encodes MQTT 5 properties: items is a list of (id, value)."""
    body = bytearray()
    for pid, val in items:
        kind = _PROP_TYPES[pid]
        body += varint(pid)
        if kind == "byte":
            body.append(val)
        elif kind == "u16":
            body += u16(val)
        elif kind == "u32":
            body += u32(val)
        elif kind == "varint":
            body += varint(val)
        elif kind in ("str", "bin"):
            body += mstr(val)
        elif kind == "pair":
            body += mstr(val[0]) + mstr(val[1])
    return varint(len(body)) + bytes(body)


def packet(first_byte, body):
    """Fixed header (first byte + remaining length) + body."""
    return bytes([first_byte]) + varint(len(body)) + bytes(body)


def connect(client_id, username=None, password=None, version=V311,
            keepalive=60, clean=True, will=None, properties=None,
            protocol_name="MQTT", flags_or=0, flags_and=0xFF):
    """CONNECT packet.

    will: dict(topic=..., payload=b"...", qos=0|1, retain=False,
    properties=[...] for 5.0). properties: list of (id, value) for 5.0.
    flags_or / flags_and tamper with the connect flags byte (tests for the
    reserved bit).
    """
    flags = 0
    if clean:
        flags |= 0x02
    if will is not None:
        flags |= 0x04 | ((will.get("qos", 0) & 3) << 3)
        if will.get("retain"):
            flags |= 0x20
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    flags = (flags | flags_or) & flags_and
    vh = mstr(protocol_name) + bytes([version, flags]) + u16(keepalive)
    if version == V5:
        vh += props(properties or [])
    pl = mstr(client_id)
    if will is not None:
        if version == V5:
            pl += props(will.get("properties", []))
        pl += mstr(will["topic"])
        wp = will.get("payload", b"")
        pl += mstr(wp if isinstance(wp, bytes) else wp.encode())
    if username is not None:
        pl += mstr(username)
    if password is not None:
        pl += mstr(password if isinstance(password, bytes) else password.encode())
    return packet(0x10, vh + pl)


def publish(topic, payload, qos=0, packet_id=None, version=V311,
            properties=None, retain=False, dup=False, first_byte=None):
    """PUBLISH packet. topic may be bytes (to send invalid UTF-8)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    fb = 0x30 | ((qos & 3) << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    if first_byte is not None:
        fb = first_byte
    body = mstr(topic)
    if qos > 0 or (first_byte is not None and (first_byte >> 1) & 3):
        body += u16(1 if packet_id is None else packet_id)
    if version == V5:
        body += props(properties or [])
    return packet(fb, body + payload)


def subscribe(packet_id, filters, version=V311, first_byte=0x82,
              properties=None):
    """SUBSCRIBE packet. filters: list of (topic, options byte / qos)."""
    body = u16(packet_id)
    if version == V5:
        body += props(properties or [])
    for topic, opts in filters:
        body += mstr(topic) + bytes([opts])
    return packet(first_byte, body)


def unsubscribe(packet_id, topics, version=V311):
    body = u16(packet_id)
    if version == V5:
        body += props([])
    for t in topics:
        body += mstr(t)
    return packet(0xA2, body)


def puback(packet_id, version=V311, reason=0):
    if version == V5 and reason:
        return packet(0x40, u16(packet_id) + bytes([reason]))
    return packet(0x40, u16(packet_id))


def pingreq():
    return b"\xc0\x00"


def disconnect(version=V311, reason=0, properties=None):
    if version == V5 and (reason or properties):
        return packet(0xE0, bytes([reason]) + props(properties or []))
    return b"\xe0\x00"


# ---------------------------------------------------------------- decoding

def decode_varint(buf, pos=0):
    """Returns (value, new_pos) or raises ProtocolError / IndexError."""
    mult = 1
    val = 0
    for i in range(4):
        b = buf[pos + i]
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, pos + i + 1
        mult *= 128
    raise ProtocolError("varint longer than 4 bytes")


def decode_props(buf, pos):
    """Returns (dict id -> value or list of values, new_pos)."""
    plen, pos = decode_varint(buf, pos)
    end = pos + plen
    out = {}
    while pos < end:
        pid, pos = decode_varint(buf, pos)
        kind = _PROP_TYPES.get(pid)
        if kind == "byte":
            val = buf[pos]
            pos += 1
        elif kind == "u16":
            val = struct.unpack_from("!H", buf, pos)[0]
            pos += 2
        elif kind == "u32":
            val = struct.unpack_from("!I", buf, pos)[0]
            pos += 4
        elif kind == "varint":
            val, pos = decode_varint(buf, pos)
        elif kind in ("str", "bin"):
            n = struct.unpack_from("!H", buf, pos)[0]
            val = bytes(buf[pos + 2:pos + 2 + n])
            pos += 2 + n
            if kind == "str":
                val = val.decode("utf-8", "replace")
        elif kind == "pair":
            n = struct.unpack_from("!H", buf, pos)[0]
            k = bytes(buf[pos + 2:pos + 2 + n]).decode("utf-8", "replace")
            pos += 2 + n
            n = struct.unpack_from("!H", buf, pos)[0]
            v = bytes(buf[pos + 2:pos + 2 + n]).decode("utf-8", "replace")
            pos += 2 + n
            val = (k, v)
        else:
            raise ProtocolError("unknown property 0x%02x" % pid)
        if pid == PROP_USER_PROPERTY:
            out.setdefault(pid, []).append(val)
        else:
            out[pid] = val
    if pos != end:
        raise ProtocolError("property length mismatch")
    return out, end


class Packet:
    """A received packet: type, flags (low nibble) and body bytes."""

    def __init__(self, first_byte, body):
        self.type = first_byte >> 4
        self.flags = first_byte & 0x0F
        self.body = body

    def __repr__(self):
        return "<%s flags=%x body=%s>" % (NAMES.get(self.type, self.type),
                                          self.flags, self.body[:32].hex())


def parse_connack(p, version):
    """Returns (session_present, reason, props). A 3.1.1-format CONNACK
    (2 bytes) is accepted in 5.0 too: servers answer a bad protocol level
    that way."""
    if p.type != CONNACK:
        raise ProtocolError("expected CONNACK, got %r" % p)
    if len(p.body) < 2:
        raise ProtocolError("short CONNACK")
    sp, rc = p.body[0] & 1, p.body[1]
    pr = {}
    if version == V5 and len(p.body) > 2:
        pr, _ = decode_props(p.body, 2)
    return sp, rc, pr


def parse_puback(p, version):
    """Returns (packet_id, reason)."""
    if p.type != PUBACK or len(p.body) < 2:
        raise ProtocolError("expected PUBACK, got %r" % p)
    pid = struct.unpack_from("!H", p.body, 0)[0]
    reason = 0
    if version == V5 and len(p.body) >= 3:
        reason = p.body[2]
    return pid, reason


def parse_suback(p, version):
    """Returns (packet_id, [codes])."""
    if p.type != SUBACK or len(p.body) < 3:
        raise ProtocolError("expected SUBACK, got %r" % p)
    pid = struct.unpack_from("!H", p.body, 0)[0]
    pos = 2
    if version == V5:
        _, pos = decode_props(p.body, pos)
    return pid, list(p.body[pos:])


def parse_publish(p, version):
    """Returns dict(topic, payload, qos, retain, dup, packet_id, props)."""
    if p.type != PUBLISH:
        raise ProtocolError("expected PUBLISH, got %r" % p)
    qos = (p.flags >> 1) & 3
    n = struct.unpack_from("!H", p.body, 0)[0]
    topic = bytes(p.body[2:2 + n]).decode("utf-8")
    pos = 2 + n
    pid = None
    if qos:
        pid = struct.unpack_from("!H", p.body, pos)[0]
        pos += 2
    pr = {}
    if version == V5:
        pr, pos = decode_props(p.body, pos)
    return dict(topic=topic, payload=bytes(p.body[pos:]), qos=qos,
                retain=bool(p.flags & 1), dup=bool(p.flags & 8),
                packet_id=pid, props=pr)


def parse_disconnect(p, version):
    """Returns the reason code (0 when absent)."""
    if p.type != DISCONNECT:
        raise ProtocolError("expected DISCONNECT, got %r" % p)
    if version == V5 and len(p.body) >= 1:
        return p.body[0]
    return 0


# ---------------------------------------------------------------- socket

class Conn:
    """A raw MQTT connection with bounded reads."""

    def __init__(self, host, port, timeout=5.0, version=V311):
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.stash = []
        self.eof = False

    def send(self, data):
        """Sends all bytes. Raises Closed if the peer has gone away."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            raise Closed(str(e))

    def try_send(self, data):
        """Sends, returning False instead of raising when the peer is gone
        (a server may close as soon as it sees a bad header)."""
        try:
            self.send(data)
            return True
        except (Closed, OSError):
            return False

    def _fill(self, deadline):
        if self.eof:
            raise Closed("eof")
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("timeout")
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise Timeout("timeout")
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError) as e:
            self.eof = True
            raise Closed(str(e))
        except OSError as e:
            self.eof = True
            raise Closed(str(e))
        if not data:
            self.eof = True
            raise Closed("eof")
        self.buf += data

    def _try_parse(self):
        if len(self.buf) < 2:
            return None
        mult, val, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            val += (b & 0x7F) * mult
            i += 1
            if not b & 0x80:
                break
            mult *= 128
            if i > 4:
                raise ProtocolError("bad remaining length from server")
        if len(self.buf) < i + val:
            return None
        p = Packet(self.buf[0], bytes(self.buf[i:i + val]))
        del self.buf[:i + val]
        return p

    def read(self, timeout=5.0):
        """Next packet (packets set aside by read_type come first). Raises
        Timeout or Closed (a partial packet followed by EOF is Closed too)."""
        if self.stash:
            return self.stash.pop(0)
        return self._read_wire(timeout)

    def _read_wire(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            p = self._try_parse()
            if p is not None:
                return p
            self._fill(deadline)

    def read_type(self, ptype, timeout=5.0, skip=(PINGRESP,)):
        """Next packet of type ptype. Packets of the types in skip are set
        aside (PINGRESP is dropped) for later read() calls; any other type
        is a ProtocolError."""
        for i, p in enumerate(self.stash):
            if p.type == ptype:
                return self.stash.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            p = self._read_wire(max(0.0, deadline - time.monotonic()))
            if p.type == ptype:
                return p
            if p.type in skip:
                if p.type != PINGRESP:
                    self.stash.append(p)
                continue
            raise ProtocolError("expected %s, got %r" % (NAMES[ptype], p))

    def wait_closed(self, timeout=5.0):
        """Waits for the peer to close. Returns (closed: bool, packets read
        meanwhile)."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            try:
                p = self.read(max(0.0, deadline - time.monotonic()))
                got.append(p)
            except Closed:
                return True, got
            except Timeout:
                return False, got
            except ProtocolError:
                # Garbage from the server: keep draining until it closes.
                self.buf.clear()

    def is_open(self, wait=0.2):
        """True if the peer has not closed within wait seconds (any packet
        read meanwhile is kept in the buffer's place: discarded)."""
        closed, _ = self.wait_closed(wait)
        return not closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with a TCP RST (SO_LINGER 0): an abrupt network failure."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # -- conveniences --------------------------------------------------

    def do_connect(self, client_id, username=None, password=None,
                   keepalive=60, timeout=5.0, **kw):
        """Sends CONNECT and reads CONNACK. Returns (session_present,
        reason, props). Raises Closed if the server hangs up instead."""
        self.send(connect(client_id, username, password, version=self.version,
                          keepalive=keepalive, **kw))
        p = self.read(timeout)
        return parse_connack(p, self.version)

    def do_publish_qos1(self, topic, payload, packet_id=1, timeout=5.0,
                        properties=None):
        """PUBLISH QoS 1 and wait for its PUBACK. Returns the reason code."""
        self.send(publish(topic, payload, qos=1, packet_id=packet_id,
                          version=self.version, properties=properties))
        deadline = time.monotonic() + timeout
        while True:
            p = self.read_type(PUBACK, max(0.0, deadline - time.monotonic()),
                               skip=(PINGRESP, PUBLISH))
            pid, reason = parse_puback(p, self.version)
            if pid == packet_id:
                return reason

    def do_subscribe(self, filters, packet_id=1, timeout=5.0):
        """SUBSCRIBE and wait for SUBACK. filters: [(topic, qos)]. Returns
        the list of reason codes / granted QoS."""
        self.send(subscribe(packet_id, filters, version=self.version))
        deadline = time.monotonic() + timeout
        while True:
            p = self.read_type(SUBACK, max(0.0, deadline - time.monotonic()),
                               skip=(PINGRESP, PUBLISH))
            pid, codes = parse_suback(p, self.version)
            if pid == packet_id:
                return codes

    def do_ping(self, timeout=5.0):
        self.send(pingreq())
        self.read_type(PINGRESP, timeout, skip=(PUBLISH,))

    def do_disconnect(self):
        self.try_send(disconnect(self.version))
        self.close()


def connect_ok(host, port, client_id, username=None, password=None,
               version=V311, keepalive=60, **kw):
    """Opens a connection and completes CONNECT; raises AssertionError
    unless CONNACK is success. Returns (conn, session_present, props)."""
    c = Conn(host, port, version=version)
    try:
        sp, rc, pr = c.do_connect(client_id, username, password,
                                  keepalive=keepalive, **kw)
    except Exception:
        c.close()
        raise
    if rc != 0:
        c.close()
        raise AssertionError("CONNACK reason 0x%02x for %s" % (rc, client_id))
    return c, sp, pr
