#!/usr/bin/python3
"""Writes the hand-made seed files of fuzz/corpus/<target>/seed-*.

Run once by hand (the seeds are committed; the build never runs this):
    /usr/bin/python3 fuzz/make_seeds.py
It rewrites only files named seed-*; the merged fuzzer finds (named by
content hash) and crash-* regression inputs are left alone.
    /usr/bin/python3 fuzz/make_seeds.py --canned
prints the canned CONNECT arrays of fuzz_handlers.c instead.

Input formats are described at the top of each fuzz_<target>.c. For
fuzz_handlers the input is a script of operations; the canned CONNECTs
(op 7, aux 0..7) are CANNED below, in order:
    0 v3.1.1 clean "dev1"
    1 v3.1.1 persistent "dev1"
    2 v5 "dev2", session expiry 60
    3 v5 "app", session expiry 60, topic alias maximum 8, will on
      devices/dev1/status at QoS 1 with a will delay of 5 s
    4 v3.1.1 "app", will on app/will
    5 v5 empty client id (server-assigned), keepalive 0
    6 v3.1.1 "dev1" with username "deny" (refused)
    7 v5 "dev1", receive maximum 1, maximum packet size 64, topic alias
      maximum 4, request problem information 0
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


# ---- MQTT encoding ---------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def s(x):
    if isinstance(x, str):
        x = x.encode()
    return struct.pack(">H", len(x)) + x


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def props(*items):
    body = b"".join(items)
    return varint(len(body)) + body


# Property builders.
def p_u8(i, v): return bytes([i, v])
def p_u16(i, v): return bytes([i]) + u16(v)
def p_u32(i, v): return bytes([i]) + u32(v)
def p_var(i, v): return bytes([i]) + varint(v)
def p_str(i, v): return bytes([i]) + s(v)
def p_pair(k, v): return bytes([0x26]) + s(k) + s(v)


def connect(cid, version=4, clean=True, keepalive=60, will=None, user=None, pw=None,
            cprops=b"", wprops=b""):
    flags = 0x02 if clean else 0
    if will:
        topic, payload, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
    if user is not None:
        flags |= 0x80
    if pw is not None:
        flags |= 0x40
    body = s("MQTT") + bytes([version, flags]) + u16(keepalive)
    if version == 5:
        body += props(cprops) if not cprops.startswith(b"\xff") else cprops[1:]
    body += s(cid)
    if will:
        if version == 5:
            body += props(wprops)
        body += s(topic) + s(payload)
    if user is not None:
        body += s(user)
    if pw is not None:
        body += s(pw)
    return packet(0x10, body)


def publish(topic, payload=b"", qos=0, pid=1, version=4, retain=False, dup=False, pprops=b""):
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = s(topic)
    if qos:
        body += u16(pid)
    if version == 5:
        body += props(pprops)
    if isinstance(payload, str):
        payload = payload.encode()
    return packet(first, body + payload)


def subscribe(pid, entries, version=4, sprops=b""):
    body = u16(pid)
    if version == 5:
        body += props(sprops)
    for f, o in entries:
        body += s(f) + bytes([o])
    return packet(0x82, body)


def unsubscribe(pid, filters, version=4):
    body = u16(pid)
    if version == 5:
        body += props()
    for f in filters:
        body += s(f)
    return packet(0xA2, body)


def ack(kind, pid, version=4, reason=None, aprops=None):
    first = {"puback": 0x40, "pubrec": 0x50, "pubrel": 0x62, "pubcomp": 0x70}[kind]
    body = u16(pid)
    if version == 5 and reason is not None:
        body += bytes([reason])
        if aprops is not None:
            body += props(aprops)
    return packet(first, body)


PINGREQ = bytes([0xC0, 0x00])
DISCONNECT311 = bytes([0xE0, 0x00])


def disconnect5(reason=0, dprops=None):
    body = bytes([reason])
    if dprops is not None:
        body += props(dprops)
    return packet(0xE0, body)


# ---- The canned CONNECTs of fuzz_handlers.c --------------------------------

def canned_connects():
    return [
        ("connect_v311_dev1", connect("dev1")),
        ("connect_v311_dev1_persist", connect("dev1", clean=False)),
        ("connect_v5_dev2_expiry", connect("dev2", version=5, cprops=p_u32(0x11, 60))),
        ("connect_v5_app_will", connect("app", version=5, cprops=p_u32(0x11, 60) + p_u16(0x22, 8),
                                        will=("devices/dev1/status", "gone", 1, False),
                                        wprops=p_u32(0x18, 5) + p_u8(0x01, 1))),
        ("connect_v311_app_will", connect("app", will=("app/will", "bye", 0, False))),
        ("connect_v5_assigned", connect("", version=5, keepalive=0)),
        ("connect_v311_deny", connect("dev1", user="deny")),
        ("connect_v5_dev1_small", connect("dev1", version=5,
                                          cprops=p_u16(0x21, 1) + p_u32(0x27, 64) + p_u16(0x22, 4)
                                          + p_u8(0x17, 0))),
    ]


def print_canned():
    def ch(b):
        if chr(b).isalnum() or b in b"/$":
            return "'%s'" % chr(b)
        return "0x%02X" % b
    for name, pkt in canned_connects():
        print("static const uint8_t %s[] = {%s};" % (name, ", ".join(ch(b) for b in pkt)))


# ---- Codec seeds: single wire packets -------------------------------------

def codec_seeds():
    will_props = (p_u32(0x18, 5) + p_u8(0x01, 1) + p_u32(0x02, 60) + p_str(0x03, "text/plain")
                  + p_str(0x08, "resp/t") + p_str(0x09, b"\x01\x02") + p_pair("k", "v"))
    conn_props = (p_u32(0x11, 3600) + p_u16(0x21, 10) + p_u32(0x27, 4096) + p_u16(0x22, 5)
                  + p_u8(0x17, 0) + p_u8(0x19, 1) + p_pair("app", "fuzz"))
    pub_props = (p_u8(0x01, 1) + p_u32(0x02, 30) + p_str(0x03, "application/json")
                 + p_str(0x08, "devices/d1/reply") + p_str(0x09, b"corr") + p_pair("a", "b"))
    seeds = {
        "connect311": connect("dev1"),
        "connect311-will-user": connect("dev1", clean=False, will=("devices/dev1/status", "bye", 1, True),
                                        user="u", pw=b"p\x00w"),
        "connect311-empty-id": connect(""),
        "connect5-props-will": connect("dev2", version=5, cprops=conn_props,
                                       will=("devices/dev2/status", "gone", 2, False),
                                       wprops=will_props, user="user", pw=b"secret"),
        "connect5-auth-method": connect("d", version=5, cprops=p_str(0x15, "SCRAM") + p_str(0x16, b"x")),
        "connect31-mqisdp": packet(0x10, s("MQIsdp") + bytes([3, 2]) + u16(60) + s("old")),
        "publish311-qos0": publish("devices/dev1/telemetry", '{"temp":21.5}'),
        "publish311-qos1": publish("devices/dev1/telemetry", '{"temp":21.5}', qos=1, pid=7),
        "publish311-qos2-dup-retain": publish("a/b", "x", qos=2, pid=65535, dup=True, retain=True),
        "publish5-qos0-props": publish("devices/dev1/twin/get", "{}", version=5, pprops=pub_props),
        "publish5-qos1": publish("devices/dev1/telemetry", "[1,2]", qos=1, pid=2, version=5),
        "publish5-qos2-alias": publish("t", "p", qos=2, pid=3, version=5, pprops=p_u16(0x23, 1)),
        "publish-empty-topic": publish("", "x"),
        "subscribe311": subscribe(1, [("devices/dev1/#", 1), ("a/+/c", 0), ("#", 2)]),
        "subscribe5-opts": subscribe(2, [("devices/+/telemetry", 0x2D), ("$share/g/t", 1)],
                                     version=5, sprops=p_pair("x", "y")),
        "subscribe5-subid": subscribe(3, [("a", 0)], version=5, sprops=p_var(0x0B, 12)),
        "unsubscribe311": unsubscribe(4, ["devices/dev1/#", "a/+/c"]),
        "unsubscribe5": unsubscribe(5, ["#"], version=5),
        "puback311": ack("puback", 1),
        "pubrec311": ack("pubrec", 2),
        "pubrel311": ack("pubrel", 3),
        "pubcomp311": ack("pubcomp", 4),
        "puback5-reason-props": ack("puback", 5, 5, 0x10, p_str(0x1F, "no subscribers") + p_pair("k", "v")),
        "pubrel5-reason": ack("pubrel", 6, 5, 0x92),
        "pingreq": PINGREQ,
        "disconnect311": DISCONNECT311,
        "disconnect5-props": disconnect5(0x04, p_u32(0x11, 0) + p_str(0x1F, "bye") + p_pair("k", "v")),
        "disconnect5-reason-only": disconnect5(0x00),
        "auth5": packet(0xF0, bytes([0x18]) + props(p_str(0x15, "m"))),
        # Malformed variants.
        "bad-varint-5-bytes": bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        "bad-truncated-connect": connect("dev1")[:-2],
        "bad-connect-reserved-flag": packet(0x10, s("MQTT") + bytes([4, 0x03]) + u16(60) + s("x")),
        "bad-connect-will-qos3": packet(0x10, s("MQTT") + bytes([4, 0x1E]) + u16(60) + s("x") + s("t") + s("p")),
        "bad-connect-pw-no-user": packet(0x10, s("MQTT") + bytes([4, 0x42]) + u16(60) + s("x") + s("p")),
        "bad-connect-level-6": packet(0x10, s("MQTT") + bytes([6, 0x02]) + u16(60) + s("x")),
        "bad-connect5-dup-prop": connect("x", version=5, cprops=p_u32(0x11, 1) + p_u32(0x11, 2)),
        "bad-connect5-unknown-prop": connect("x", version=5, cprops=bytes([0x7F, 0])),
        "bad-connect5-recvmax-0": connect("x", version=5, cprops=p_u16(0x21, 0)),
        "bad-connect5-prop-len-long": connect("x", version=5, cprops=b"\xff" + varint(200) + p_u32(0x11, 1)),
        "bad-publish-wildcard": publish("a/+/b", "x"),
        "bad-publish-qos3": bytes([0x36]) + publish("a", "x", qos=1)[1:],
        "bad-publish-qos0-dup": bytes([0x38]) + publish("a", "x")[1:],
        "bad-publish-pid0": publish("a", "x", qos=1, pid=0),
        "bad-publish-utf8-surrogate": publish(b"a\xed\xa0\x80", "x"),
        "bad-publish-utf8-overlong": publish(b"\xc0\xaf", "x"),
        "bad-publish-utf8-nul": publish(b"a\x00b", "x"),
        "bad-publish5-subid": publish("a", "x", version=5, pprops=p_var(0x0B, 1)),
        "bad-publish5-payload-format-2": publish("a", "x", version=5, pprops=p_u8(0x01, 2)),
        "bad-subscribe-no-entries": packet(0x82, u16(1)),
        "bad-subscribe311-opts": subscribe(1, [("a", 0x04)]),
        "bad-subscribe-qos3": subscribe(1, [("a", 3)]),
        "bad-subscribe5-retain-handling-3": subscribe(1, [("a", 0x30)], version=5),
        "bad-subscribe-flags": bytes([0x80]) + subscribe(1, [("a", 0)])[1:],
        "bad-ack-pid0": ack("puback", 0),
        "bad-ack311-long": packet(0x40, u16(1) + b"\x00"),
        "bad-disconnect311-body": packet(0xE0, b"\x00"),
        "bad-utf8-4byte-max": publish(b"\xf4\x90\x80\x80", "x"),
        "utf8-4byte-ok": publish(b"\xf0\x9f\x98\x80/\xe2\x82\xac", "x"),
    }
    return seeds


# ---- Handler scripts -------------------------------------------------------

def opbyte(kind, client=0, aux=0, bit3=None):
    for x in range(4):
        b = kind | (((aux << 2) | x) << 3)
        if b > 255:
            continue
        if bit3 is not None:
            if ((b >> 3) & 1) != bit3:
                continue
        elif (b >> 3) % 3 != client:
            continue
        return b
    raise ValueError((kind, client, aux, bit3))


def W(client, data):
    """A write: short form when it fits, else the 2-byte length form."""
    if len(data) < 256:
        return bytes([opbyte(0, client)]) + bytes([len(data)]) + data
    return bytes([opbyte(1, client)]) + u16(len(data)) + data


def W_split(client, data, *cuts):
    """The same bytes as several writes, split at the given offsets."""
    out, last = b"", 0
    for c in list(cuts) + [len(data)]:
        out += W(client, data[last:c])
        last = c
    return out


def REST(client, data):
    return bytes([opbyte(2, client)]) + data


def CLOSE(client):
    return bytes([opbyte(3, client)])


def KICK(index, discard):
    return bytes([opbyte(4, aux=index, bit3=1 if discard else 0)])


def SPUB(topic, qos, retain=False):
    t = topic.encode() if isinstance(topic, str) else topic
    return bytes([opbyte(5, aux=qos | (4 if retain else 0))]) + bytes([len(t)]) + t


def ACKS():
    return bytes([opbyte(6, aux=0)])


def SEND(topic, qos):
    t = topic.encode()
    return bytes([opbyte(6, aux=4 + qos)]) + bytes([len(t)]) + t


def RESTART():
    return bytes([opbyte(6, aux=6)])


def CANNED(client, n):
    return bytes([opbyte(7, client, n)])


# An unconfined v5 client without a deny prefix (the hook's "root" ids).
ROOT5 = connect("root1", version=5, cprops=p_u16(0x22, 2))


def handler_seeds(codec):
    dev1 = "devices/dev1/"
    seeds = {
        # One v3.1.1 device through its whole life.
        "lifecycle311": CANNED(0, 0)
        + W(0, subscribe(1, [(dev1 + "#", 1)]))
        + W(0, publish(dev1 + "x", "hello", qos=1, pid=1))
        + W(0, ack("puback", 1))
        + W(0, PINGREQ)
        + W(0, DISCONNECT311),
        # A raw CONNECT written in pieces (partial reads), then v5 traffic.
        "v5-split-writes": W_split(0, connect("dev2", version=5, cprops=p_u32(0x11, 30) + p_pair("a", "b")), 1, 2, 9)
        + W_split(0, subscribe(1, [("devices/dev2/+", 1), ("devices/dev2/#", 0x24)], version=5), 3)
        + W(0, publish("devices/dev2/echo", "ping", qos=1, pid=1, version=5,
                       pprops=p_str(0x03, "text/plain") + p_pair("k", "v") + p_u32(0x02, 10)))
        + W(0, unsubscribe(2, ["devices/dev2/+", "nope"], version=5))
        + W(0, disconnect5(0x04, p_u32(0x11, 10))),
        # An application watches everything; a device publishes in every
        # way; the application dies and its will goes to the device.
        "route-and-will": CANNED(0, 3)
        + W(0, subscribe(1, [("#", 1)], version=5))
        + CANNED(1, 0)
        + W(1, subscribe(1, [(dev1 + "status", 1)]))
        + W(1, publish(dev1 + "telemetry", '{"t":1}', qos=1, pid=1))
        + W(1, publish(dev1 + "cmd/bad", "x", qos=1, pid=3))
        + W(1, publish(dev1 + "q2", "x", qos=2, pid=4))
        + W(1, publish(dev1 + "q2", "x", qos=2, pid=4, dup=True))
        + W(1, ack("pubrel", 4))
        + W(1, ack("pubrel", 5))
        + W(1, ack("pubrec", 6))
        + W(1, publish(dev1 + "q0", "x"))
        + CLOSE(0)
        + W(1, publish(dev1 + "telemetry", '!{"t":2}', qos=1, pid=2))
        + ACKS(),
        # Persistent session: takeover, offline queue, resume with DUP.
        "persistent-takeover-resume": CANNED(0, 1)
        + W(0, subscribe(1, [(dev1 + "cmd/#", 1)]))
        + SPUB(dev1 + "cmd/a", 1)
        + CANNED(1, 1)
        + CLOSE(1)
        + SPUB(dev1 + "cmd/b", 1) + SPUB(dev1 + "cmd/c", 1) + SPUB(dev1 + "cmd/d", 0)
        + CANNED(2, 1)
        + W(2, ack("puback", 1))
        + KICK(0, False)
        + CANNED(0, 1)
        + KICK(0, True),
        # v5 session expiry, kicked offline and resumed.
        "v5-expiry-kick": CANNED(0, 2)
        + W(0, subscribe(1, [("devices/dev2/#", 1)], version=5))
        + CLOSE(0)
        + SPUB("devices/dev2/in", 1)
        + CANNED(1, 2)
        + W(1, disconnect5(0, p_u32(0x11, 0))),
        # Backpressure: more QoS 1 telemetry than max_inflight, completed late.
        "backpressure-telemetry": CANNED(0, 0)
        + W(0, b"".join(publish(dev1 + "telemetry", "{}", qos=1, pid=i) for i in range(1, 8)))
        + W(0, b"".join(publish(dev1 + "telemetry", "{}", qos=2, pid=i) for i in range(8, 11)))
        + ACKS()
        + CLOSE(0),
        "backpressure-close-early": CANNED(0, 1)
        + REST(0, b"".join(publish(dev1 + "telemetry", "{}", qos=1, pid=i) for i in range(1, 12))
               + DISCONNECT311),
        # A v3.1.1 client whose message is refused transiently is closed.
        "v311-transient-refusal": CANNED(0, 0)
        + W(0, publish(dev1 + "telemetry", "!", qos=1, pid=9))
        + W(0, publish(dev1 + "after", "x", qos=1, pid=10)),
        # A small receive maximum and packet size on the receiving side.
        "v5-small-receiver": CANNED(0, 7)
        + W(0, subscribe(1, [(dev1 + "#", 1)], version=5))
        + CANNED(1, 4)
        + b"".join(W(1, publish(dev1 + "in", "x" * n, qos=1, pid=n + 1)) for n in (1, 10, 100, 3))
        + W(0, ack("puback", 1, 5))
        + W(0, ack("puback", 2, 5, 0x10)),
        # Refusals at CONNECT: denied user, unsupported level, ACL'd will.
        "connect-refusals": CANNED(0, 6)
        + W(1, connect31()),
        "connect-will-outside-acl": W(0, connect("dev9", will=("other/topic", "x", 0, False))),
        "connect5-assigned-id": CANNED(0, 5)
        + W(0, subscribe(1, [("+/+", 0)], version=5))
        + SPUB("a/b", 0) + SPUB("$SYS/x", 1) + SPUB("bad/#", 0) + SPUB("", 1),
        # Protocol errors after CONNECT.
        "second-connect": CANNED(0, 0) + W(0, connect("dev1")),
        "publish-before-connect": W(0, publish("a", "x")),
        "oversize-packet": CANNED(0, 0) + W(0, bytes([0x30, 0xFF, 0xFF, 0x03])),
        "bad-flags": CANNED(0, 0) + W(0, bytes([0xC1, 0x00])),
        "auth-after-connect": CANNED(0, 2) + W(0, packet(0xF0, bytes([0x00]))),
        "acl-denied": CANNED(0, 0)
        + W(0, subscribe(1, [("devices/dev2/#", 1), ("#", 0), (dev1 + "ok", 1)]))
        + W(0, publish("devices/dev2/x", "x", qos=1, pid=1))
        + W(0, unsubscribe(2, ["devices/dev2/#"])),
        "too-many-subscriptions": CANNED(0, 4)
        + W(0, subscribe(1, [("t/%d" % i, 1) for i in range(10)]))
        + W(0, subscribe(2, [("t/+/+/+/+/+/+/+/+", 0), ("$share/g/t", 0), ("a#", 0)])),
        "three-clients-same-id": CANNED(0, 0) + CANNED(1, 0) + CANNED(2, 7) + CLOSE(2) + CANNED(2, 0),
        # Retained messages: stored, sent on subscribe (not from the deny
        # prefix), replaced, cleared by an empty payload.
        "retained": W(0, ROOT5)
        + W(0, publish("a/b", "r1", qos=1, pid=1, version=5, retain=True))
        + SPUB("a/c", 1, retain=True) + SPUB("secret/x", 0, retain=True)
        + CANNED(1, 3)
        + W(1, subscribe(1, [("#", 1), ("a/+", 0x0A)], version=5))
        + W(0, publish("a/b", "", qos=0, version=5, retain=True))
        + W(1, subscribe(2, [("a/#", 0x22)], version=5)),
        # Outgoing QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP; and a refusal.
        "qos2-out": CANNED(0, 0)
        + W(0, subscribe(1, [(dev1 + "#", 2)]))
        + SPUB(dev1 + "x", 2)
        + W(0, ack("pubrec", 1))
        + W(0, ack("pubcomp", 1))
        + CANNED(1, 2)
        + W(1, subscribe(1, [("devices/dev2/#", 2)], version=5))
        + SPUB("devices/dev2/y", 2)
        + W(1, ack("pubrec", 1, 5, 0x80)),
        # Topic aliases towards a client that allows 4, and from a client.
        "aliases": CANNED(0, 7)
        + W(0, subscribe(1, [(dev1 + "#", 0)], version=5))
        + b"".join(SPUB(dev1 + t, 0) for t in ("a", "b", "a", "c", "d", "e", "a", "f"))
        + CANNED(1, 3)
        + W(1, publish(dev1 + "a", "x", version=5, pprops=p_u16(0x23, 1)))
        + W(1, publish("", "y", version=5, pprops=p_u16(0x23, 1)))
        + W(1, publish("", "z", version=5, pprops=p_u16(0x23, 2))),
        # Shared subscriptions: one group, two members, round robin.
        "shared": CANNED(0, 3) + W(0, subscribe(1, [("$share/g/t/#", 1)], version=5))
        + W(1, ROOT5) + W(1, subscribe(1, [("$share/g/t/#", 1), ("$share/h/t/+", 0)], version=5))
        + b"".join(SPUB("t/%d" % i, 1) for i in range(4))
        + CLOSE(0) + SPUB("t/9", 1)
        + W(1, unsubscribe(2, ["$share/g/t/#"], version=5)),
        # A will with a delay, on a persistent v5 session: deferred, then
        # discarded by a reconnect or fired by a kick.
        "will-delay": CANNED(0, 0) + W(0, subscribe(1, [(dev1 + "status", 1)]))
        + CANNED(1, 3) + CLOSE(1) + CANNED(1, 3) + CLOSE(1) + KICK(1, True),
        # The subscribed hook sends at once; mqtt_broker_send to the newest id.
        "sync-and-send": CANNED(0, 0)
        + W(0, subscribe(1, [(dev1 + "twin/sync", 1), (dev1 + "cmd/+", 1)]))
        + SEND(dev1 + "cmd/reboot", 1) + SEND(dev1 + "other", 0) + SEND("bad/#", 0),
        # The deny prefix and deny_subscribe.
        "deny": CANNED(0, 3)
        + W(0, subscribe(1, [("#", 1), ("secret/#", 1), ("forbidden/#", 0), ("$SYS/#", 0)], version=5))
        + W(1, ROOT5) + W(1, publish("secret/a", "s", qos=1, pid=1, version=5))
        + W(0, publish("secret/b", "s", qos=1, pid=1, version=5))
        + SPUB("secret/c", 1) + SPUB("open/c", 1),
        # Freeing the broker under live clients, pending tickets and all.
        "restart": CANNED(0, 0) + CANNED(1, 2) + CANNED(2, 3)
        + W(0, publish(dev1 + "telemetry", "{}", qos=1, pid=1))
        + RESTART()
        + CANNED(0, 1) + W(0, PINGREQ),
        # More takeovers of one id than takeover_limit allows in a minute.
        "takeover-storm": b"".join(CANNED(i % 3, 0) for i in range(40)),
    }
    # Every codec seed after a CONNECT of the matching version.
    for name, pkt in codec.items():
        v5 = "5" in name.split("-")[0] or "5-" in name
        seeds["after-connect-" + name] = CANNED(0, 2 if v5 else 0) + REST(0, pkt)
    return seeds


def connect31():
    return packet(0x10, s("MQIsdp") + bytes([3, 2]) + u16(60) + s("old"))


# ---- Topic seeds -----------------------------------------------------------

TOPIC_SEEDS = {
    "spec-hash": "sport/tennis/player1/#\nsport/tennis/player1/ranking\nsport/tennis/player1",
    "spec-plus": "sport/tennis/+\nsport/tennis/player1\nsport/tennis/player1/ranking",
    "plus-empty-levels": "+/+\n/finance\n/\n+",
    "sys": "#\n$SYS/monitor/Clients\n+/monitor/Clients\n$SYS/#",
    "parent-level": "sport/#\nsport\nsport/",
    "trailing-slash": "sport/+\nsport/\nsport",
    "devices": "devices/+/telemetry\ndevices/dev1/telemetry\ndevices/dev1/#\ndevices/dev2/twin/get",
    "invalid-filters": "sport/tennis#\nsport/tennis\nsport+\n#/a\na/#/b\n++\n",
    "invalid-names": "a/b\na/+\n#\n\n",
    "nul": "a\x00b\na\x00b\n+\n",
    "deep": "+/+/+/+/+/+/+/+/+/+/#\n" + "/".join("l%d" % i for i in range(40)),
    "many-siblings": "\n".join("x/%d" % i for i in range(30)) + "\nx/7",
    "utf8": "caf\u00e9/+\ncaf\u00e9/\u20ac\n\U0001F600/#",
    "share": "$share/g/a/#\n$share/g/a/b",
}


# ---- Telemetry seeds -------------------------------------------------------

def telemetry_seeds():
    seeds = {
        "object": {"temp": 21.5},
        "object-all-kinds": {"temp": 21.5, "door": "open", "on": True, "off": False, "n": -3,
                             "ts": 1700000000000, "seq": 3},
        "array": [{"a": 1}, {"b": "x", "ts": 5}, {"c": 1e308, "seq": 0}],
        "array-4-points": [{"a": 1, "b": 2}, {"c": 3, "d": 4}],
        "unicode": {"caf\u00e9": "\u20ac\U0001F600", "x": "\\\"\n"},
        "max-metric-len": {"m" * 128: 1},
        "max-string-len": {"s": "v" * 1024},
        "bad-empty-array": [],
        "bad-empty-object": {},
        "bad-only-ts": {"ts": 1},
        "bad-negative-ts": {"ts": -1, "a": 1},
        "bad-real-ts": {"ts": 1.5, "a": 1},
        "bad-string-seq": {"seq": "x", "a": 1},
        "bad-null": {"a": None},
        "bad-object-value": {"a": {"b": 1}},
        "bad-array-value": {"a": [1]},
        "bad-string-root": "str",
        "bad-number-root": 123,
        "bad-array-of-numbers": [1, 2],
        "bad-metric-too-long": {"m" * 129: 1},
        "bad-string-too-long": {"s": "v" * 1025},
        "bad-empty-metric": {"": 1},
        "bad-nested-array": [[{"a": 1}]],
    }
    out = {k: json.dumps(v).encode() for k, v in seeds.items()}
    out["bad-duplicate-key"] = b'{"a":1,"a":2}'
    out["bad-invalid-json"] = b'{"a":1'
    out["bad-nul-escape"] = b'{"a":"x\\u0000y"}'
    out["bad-trailing"] = b'{"a":1} x'
    out["bad-huge-int"] = b'{"a":123456789012345678901234567890}'
    out["bad-empty"] = b""
    out["many-points"] = json.dumps([{"m%d" % i: i} for i in range(50)]).encode()
    return out


# ---- Config seeds ----------------------------------------------------------

CONFIG_SEEDS = {
    "full": """# droverd example configuration
data_dir = /var/lib/drover
mqtt_listen = 0.0.0.0:1883
http_listen = "127.0.0.1:8080"
log_level = debug
max_packet_size = 262144
max_connections = 100000
max_inflight = 32
max_queued = 1000
max_topic_len = 256
max_topic_depth = 16
max_subscriptions = 64
max_keepalive = 0
connect_timeout = 10
session_expiry_max = 604800
max_body = 1048576
max_telemetry_points = 4096
presence_flush_ms = 5000
""",
    "dashes-and-comments": "max-inflight = 8   # per session\n\n   # only a comment\nlog-level=warn\n",
    "bad-unknown-key": "no_such_key = 1\n",
    "bad-no-equals": "max_inflight 8\n",
    "bad-range": "max_inflight = 0\n",
    "bad-number": "max_inflight = 8x\n",
    "bad-string-too-long": "log_level = " + "x" * 40 + "\n",
    "bad-u32-overflow": "session_expiry_max = 4294967296\n",
    "quotes": 'data_dir = "/tmp/a b"\nlog_level = ""\n',
    "times": "2026-11-27T10:00:00Z\n2026-11-27T10:00:00.5+02:00\n1700000000000\n"
             "2024-02-29t23:59:60.999-23:59\n0000-01-01T00:00:00Z\n9999-12-31 23:59:59z\n-5\n",
    "hostports": "127.0.0.1:8080\n[::1]:1883\nhost:99999\n:80\n[::1]80\nexample.org:0\nabcd:-1\n",
    "numbers": "9223372036854775807\n-9223372036854775808\n9223372036854775808\n+7\n 7\n007\n",
    "hex-and-ids": "deadbeef\nDEADBEEF00\nxyz0\ndev-01.a_b\n" + "d" * 65 + "\n",
    "long-line": "data_dir = " + "p" * 1100 + "\n",
    "booleans-and-lists": "allow_anonymous = yes\nallow_anonymous = off\nallow_anonymous = 2\n"
                          "deny_subscribe = \"#, $SYS/#\"\nreceive_maximum = 65535\n"
                          "topic_alias_max = 0\npublish_rate = 100\nmqtts_listen = 0.0.0.0\n",
}


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    if "--canned" in __import__("sys").argv:
        print_canned()
        return
    for target in ("codec", "topic", "telemetry", "handlers", "config"):
        d = os.path.join(CORPUS, target)
        if os.path.isdir(d):
            for n in os.listdir(d):
                if n.startswith("seed-"):
                    os.unlink(os.path.join(d, n))
    codec = codec_seeds()
    for k, v in codec.items():
        write("codec", k, v)
    for k, v in handler_seeds(codec).items():
        write("handlers", k, v)
    for k, v in TOPIC_SEEDS.items():
        write("topic", k, v)
    for k, v in telemetry_seeds().items():
        write("telemetry", k, v)
    for k, v in CONFIG_SEEDS.items():
        write("config", k, v)


if __name__ == "__main__":
    main()
