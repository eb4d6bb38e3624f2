"""Conformance: malformed input. Each case connects a victim, sends the bad
bytes and expects the connection closed (MQTT 5 after an accepted CONNECT:
a DISCONNECT with the reason first), while a witness pair of clients,
connected throughout, still completes a QoS 1 round trip afterwards."""

import unittest

import packets as P
from packets import V311, V5, connect, mstr, packet, publish, u16, varint

D = P.disconnect5


class MalformedTest(P.ConfTestCase):

    def setUp(self):
        super().setUp()
        self.w = self.witness()

    def tearDown(self):
        # Only the offending connection was affected.
        self.check_witness(self.w)
        super().tearDown()

    def bad(self, data, version=V311, allowed=None, connected=True, what=None):
        """Sends data (after a good CONNECT when connected) and expects the
        close. allowed defaults to nothing (3.1.1, or before CONNECT) and to
        DISCONNECT 0x81 (5.0 after CONNECT)."""
        if connected:
            c = self.client(version=version)
        else:
            c = self.open(version)
        if allowed is None:
            allowed = {D(0x81)} if (version == V5 and connected) else {b""}
        if not c.try_send(data):
            return  # already closed by the server: that is a close too
        self.expect_closed(c, allowed, what=what or P.hexs(data[:16]))

    # ---- fixed header ------------------------------------------------

    def test_remaining_length_five_bytes(self):
        """[MQTT-2.2.3] (3.1.1 §2.2.3) / [MQTT-1.5.5-1] (5.0 §1.5.5): a
        Remaining Length of more than four bytes is malformed: closed
        (5.0: DISCONNECT 0x81)."""
        self.bad(b"\x30\xff\xff\xff\xff\x01", V311)
        self.bad(b"\x30\xff\xff\xff\xff\x01", V5)
        self.bad(b"\xc0\x80\x80\x80\x80\x00", V5)
        self.bad(b"\x10\xff\xff\xff\xff\x7f", V311, connected=False)

    def test_reserved_packet_type_0(self):
        """[MQTT-2.2.2-2] (3.1.1) / 5.0 §2.1.2 (type 0 is reserved): closed
        (5.0: DISCONNECT 0x81 or 0x82)."""
        self.bad(b"\x00\x00", V311)
        self.bad(b"\x00\x00", V5, allowed={D(0x81), D(0x82)})

    def test_packet_type_15(self):
        """3.1.1 §2.2.1 (type 15 reserved): closed; 5.0 [MQTT-4.12.0-7]
        (AUTH without an Authentication Method at CONNECT): DISCONNECT 0x82
        (e0 01 82)."""
        self.bad(b"\xf0\x00", V311)
        self.bad(P.auth(0x18), V5, allowed={D(0x82)})
        self.bad(b"\xf0\x00", V5, allowed={D(0x82)})

    def test_server_to_client_packets_refused(self):
        """[MQTT-2.2.2-2] (3.1.1) / 5.0 §4.13: CONNACK, SUBACK, UNSUBACK and
        PINGRESP from a client -> closed (5.0: DISCONNECT 0x82 or 0x81)."""
        for data in (b"\x20\x02\x00\x00", b"\x90\x03\x00\x01\x00", b"\xb0\x02\x00\x01",
                     b"\xd0\x00"):
            self.bad(data, V311)
            self.bad(data, V5, allowed={D(0x82), D(0x81)})

    def test_reserved_flags(self):
        """[MQTT-2.2.2-2] (3.1.1) / [MQTT-2.1.3-1] (5.0): reserved flag bits
        set on PINGREQ, PUBACK, DISCONNECT ([MQTT-3.14.1-1]) -> closed
        (5.0: DISCONNECT 0x81)."""
        for data in (b"\xc1\x00", b"\x42\x00\x01", b"\xe1\x00", b"\xc8\x00"):
            self.bad(data, V311)
            self.bad(data, V5)

    def test_packet_over_max_packet_size(self):
        """[MQTT-4.13.1-1] (5.0) §3.1.2.11.4 (0x95 Packet too large): a packet over
        max_packet_size (1 MiB in paho.conf) -> DISCONNECT 0x95 (e0 01 95)
        as soon as the fixed header is read, no body needed; 3.1.1:
        closed."""
        hdr = b"\x30" + varint(P.MAX_PACKET_SIZE + 1)
        self.bad(hdr + b"\x00\x03a/b", V5, allowed={D(0x95)})
        self.bad(hdr + b"\x00\x03a/b", V311)
        # Before CONNECT: closed (a CONNACK 0x95 would be allowed too).
        self.bad(b"\x10" + varint(268435455), V5, connected=False,
                 allowed={b"", P.connack5_refused(0x95)})

    def test_packet_at_max_packet_size_accepted(self):
        """[MQTT-3.2.2-15] (5.0: the announced Maximum Packet Size is
        inclusive): a PUBLISH of exactly max_packet_size bytes is accepted
        (PUBACK) and delivered."""
        t = self.topic("max")
        s = self.client(version=V5)
        self.sub(s, [(t, 0)])
        c = self.client(version=V5)
        hdr = len(publish(t, b"", qos=1, packet_id=1, version=V5)) + 2  # 3-byte length
        data = publish(t, b"M" * (P.MAX_PACKET_SIZE - hdr), qos=1, packet_id=1, version=V5)
        self.assertEqual(len(data), P.MAX_PACKET_SIZE)
        c.send(data)
        self.expect_ack(c, P.PUBACK, 1)
        pk = self.read_packet(s, what="1 MiB delivery", timeout=10)
        self.assertEqual(P.to_bytes(pk), publish(t, b"M" * (P.MAX_PACKET_SIZE - hdr), version=V5))

    # ---- truncated fields --------------------------------------------

    def test_truncated_packets(self):
        """[MQTT-1.5.3] (3.1.1) / 5.0 §1.5.4, §4.13: a length field that
        runs past the end of its packet -> closed (5.0: DISCONNECT 0x81)."""
        for v in (V311, V5):
            self.bad(packet(0x30, u16(500) + b"conf/"), v, what="topic past the end")
            self.bad(packet(0x32, u16(3) + b"a/b" + b"\x00"), v, what="packet id cut")
            self.bad(packet(0x82, u16(1) + (b"\x00" if v == V5 else b"") + u16(40) + b"x/y"),
                     v, what="filter past the end")
            self.bad(packet(0x82, u16(1) + (b"\x00" if v == V5 else b"") + mstr("x/y")), v,
                     what="SUBSCRIBE without options byte")
            self.bad(packet(0x40, b"\x01"), v, what="PUBACK of 1 byte")
        # 5.0: a property block longer than the packet; a property cut short.
        self.bad(packet(0x30, mstr("a/b") + b"\x0a\x01"), V5, what="props past the end")
        self.bad(packet(0x30, mstr("a/b") + b"\x03\x02\x00\x00"), V5, what="u32 prop cut")
        # CONNECT whose client id runs past the end.
        self.bad(packet(0x10, mstr("MQTT") + b"\x04\x02\x00\x3c" + u16(200) + b"abc"), V311,
                 connected=False, what="CONNECT truncated")
        self.bad(packet(0x10, mstr("MQTT") + b"\x05\x02\x00\x3c\x00" + u16(200) + b"abc"), V5,
                 connected=False, allowed={b"", P.connack5_refused(0x81)},
                 what="CONNECT truncated v5")

    def test_disconnect_with_body_311(self):
        """[MQTT-4.8.0-1] (3.1.1) §3.14 (DISCONNECT has no variable header): a DISCONNECT with
        a body is malformed -> closed."""
        self.bad(b"\xe0\x01\x00", V311)

    # ---- UTF-8 -------------------------------------------------------

    def test_invalid_utf8(self):
        """[MQTT-1.5.3-1] [MQTT-1.5.3-2] (3.1.1) / [MQTT-1.5.4-1]
        [MQTT-1.5.4-2] (5.0): an overlong encoding, a UTF-16 surrogate, a
        NUL or a lone continuation byte in a topic, a filter, a client id
        or a user property -> closed (5.0: DISCONNECT 0x81)."""
        bads = [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"a\x00b", b"\x80",
                b"\xf4\x90\x80\x80"]
        base = self.topic().encode()
        for b in bads:
            self.bad(publish(base + b"/" + b, b"x"), V311, what="topic %s" % P.hexs(b))
            self.bad(publish(base + b"/" + b, b"x", version=V5), V5,
                     what="topic %s v5" % P.hexs(b))
        for b in bads[:4]:
            self.bad(P.subscribe(1, [(base + b"/" + b, 0)]), V311, what="filter %s" % P.hexs(b))
            self.bad(unsub(base + b"/" + b), V311, what="unsubscribe %s" % P.hexs(b))
            self.bad(connect(b"id" + b), V311, connected=False, what="client id %s" % P.hexs(b))
            user = varint(1 + 2 + 1 + 2 + len(b)) + b"\x26" + mstr(b"k") + mstr(b)
            self.bad(packet(0x30, mstr(base) + user + b"pl"), V5,
                     what="user property %s" % P.hexs(b))

    # ---- PUBLISH flags and ids ---------------------------------------

    def test_qos_3(self):
        """[MQTT-3.3.1-4]: PUBLISH with QoS 3 -> closed (5.0: DISCONNECT
        0x81)."""
        self.bad(publish("a/b", b"x", first_byte=0x36, packet_id=1), V311)
        self.bad(publish("a/b", b"x", first_byte=0x36, packet_id=1, version=V5), V5)

    def test_packet_id_zero(self):
        """[MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3] (5.0): PUBLISH QoS 1/2,
        SUBSCRIBE, UNSUBSCRIBE and the acknowledgements with packet id 0 ->
        closed (5.0: DISCONNECT 0x81 or 0x82)."""
        t = self.topic("z")
        for v in (V311, V5):
            allowed = {b""} if v == V311 else {D(0x81), D(0x82)}
            for data in (publish(t, b"x", qos=1, packet_id=0, version=v),
                         publish(t, b"x", qos=2, packet_id=0, version=v),
                         P.subscribe(0, [(t, 0)], version=v),
                         P.unsubscribe(0, [t], version=v),
                         P.puback(0), P.pubrel(0), P.pubrec(0), P.pubcomp(0)):
                self.bad(data, v, allowed=allowed)

    # ---- properties (5.0) --------------------------------------------

    def test_property_not_allowed_in_packet(self):
        """[MQTT-4.13.1-1] (5.0) §2.2.2.2 (a property not valid for the packet is malformed):
        Session Expiry / Receive Maximum / Will Delay in PUBLISH ->
        DISCONNECT 0x81; Will Delay in CONNECT -> CONNACK 0x81 or close;
        an unknown property id -> 0x81."""
        t = self.topic("p")
        for pr in ([(P.R.PROP_SESSION_EXPIRY, 5)], [(P.R.PROP_RECEIVE_MAXIMUM, 5)],
                   [(P.R.PROP_WILL_DELAY, 5)], [(P.R.PROP_MAXIMUM_PACKET_SIZE, 100)]):
            self.bad(publish(t, b"x", version=V5, properties=pr), V5, what="PUBLISH %r" % pr)
        self.bad(packet(0x30, mstr(t) + b"\x02\x7f\x00" + b"x"), V5, what="unknown id 0x7f")
        self.bad(connect(self.uid(), version=V5, properties=[(P.R.PROP_WILL_DELAY, 5)]), V5,
                 connected=False, allowed={b"", P.connack5_refused(0x81)},
                 what="CONNECT will delay")
        self.bad(P.subscribe(1, [(t, 0)], version=V5, properties=[(P.R.PROP_MESSAGE_EXPIRY, 5)]),
                 V5, what="SUBSCRIBE with Message Expiry")

    def test_duplicate_property(self):
        """[MQTT-4.13.1-1] (5.0) §3.3.2.3 (each property at most once, user properties
        excepted): a repeated Payload Format Indicator / Message Expiry /
        Topic Alias in PUBLISH -> DISCONNECT 0x82; a repeated Session
        Expiry in CONNECT -> CONNACK 0x82 or close."""
        t = self.topic("d")
        for pr in ([(P.R.PROP_PAYLOAD_FORMAT, 0), (P.R.PROP_PAYLOAD_FORMAT, 1)],
                   [(P.R.PROP_MESSAGE_EXPIRY, 5), (P.R.PROP_MESSAGE_EXPIRY, 6)],
                   [(P.R.PROP_CONTENT_TYPE, "a"), (P.R.PROP_CONTENT_TYPE, "b")],
                   [(P.R.PROP_TOPIC_ALIAS, 1), (P.R.PROP_TOPIC_ALIAS, 1)]):
            self.bad(publish(t, b"x", version=V5, properties=pr), V5, allowed={D(0x82)},
                     what="PUBLISH %r" % pr)
        self.bad(connect(self.uid(), version=V5, properties=[(P.R.PROP_SESSION_EXPIRY, 1),
                                                            (P.R.PROP_SESSION_EXPIRY, 2)]),
                 V5, connected=False, allowed={b"", P.connack5_refused(0x82)},
                 what="CONNECT duplicate Session Expiry")

    def test_bad_property_values(self):
        """[MQTT-4.13.1-1] (5.0) §3.3.2.3.2 / §3.1.2.11.7: Payload Format Indicator 2 or
        Request Problem Information 2 -> Protocol Error (0x82) or
        Malformed (0x81)."""
        t = self.topic("v")
        self.bad(publish(t, b"x", version=V5, properties=[(P.R.PROP_PAYLOAD_FORMAT, 2)]), V5,
                 allowed={D(0x82), D(0x81)})
        self.bad(connect(self.uid(), version=V5, properties=[(0x17, 2)]), V5, connected=False,
                 allowed={b"", P.connack5_refused(0x82), P.connack5_refused(0x81)})

    # ---- the good client keeps working -------------------------------

    def test_many_bad_clients_in_a_row(self):
        """[MQTT-4.8.0-1] (3.1.1) / [MQTT-4.13.1-1] (5.0) (an error closes
        only that connection): 30 bad connections
        in a row, each closed, while the witness keeps round-tripping."""
        for i in range(30):
            self.bad(b"\x00\x00" if i % 2 else b"\x30\xff\xff\xff\xff\x01", V311)
            if i % 10 == 9:
                self.check_witness(self.w)


def unsub(topic_bytes):
    return packet(0xA2, u16(1) + mstr(topic_bytes))


if __name__ == "__main__":
    unittest.main(verbosity=2)
