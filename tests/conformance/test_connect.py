"""Conformance: CONNECT / CONNACK, keepalive, PINGREQ (MQTT 3.1.1 and 5.0).

Raw bytes in, exact bytes out. Clause tags: [MQTT-x.y.z-n] as numbered in
the spec of the version named beside it when the two specs differ.
"""

import time
import unittest

import packets as P
from packets import V311, V5, connect, hexs, u16


class ConnectTest(P.ConfTestCase):

    # ---- CONNACK bytes ------------------------------------------------

    def test_connack_311_exact_bytes(self):
        """[MQTT-3.2.0-1] [MQTT-3.2.2-1] [MQTT-3.1.4-4] (3.1.1): a valid
        CONNECT (clean session) gets exactly 20 02 00 00."""
        cid = self.uid()
        body = (b"\x00\x04MQTT" + b"\x04" + b"\x02" + b"\x00\x3c" + u16(len(cid)) + cid.encode())
        c = self.open()
        c.send(bytes([0x10, len(body)]) + body)
        self.expect(c, bytes.fromhex("20020000"), "CONNACK")
        c.send(P.pingreq())
        self.expect(c, bytes.fromhex("d000"), "PINGRESP")

    def test_connack_v5_bytes_and_properties(self):
        """[MQTT-3.2.2-2] (5.0: Clean Start 1 -> Session Present 0)
        [MQTT-4.12.0-6] (no Authentication Method unless asked): CONNACK
        20 .. 00 00 with exactly Receive Maximum 64, Maximum Packet Size
        1048576, Topic Alias Maximum 16 (paho.conf), and nothing else."""
        c = self.open(V5)
        c.send(connect(self.uid(), version=V5, keepalive=30))
        p = self.read_packet(c, what="CONNACK")
        raw = P.to_bytes(p)
        self.assertEqual(p.type, P.CONNACK, hexs(raw))
        self.assertEqual(p.flags, 0, hexs(raw))
        self.assertEqual(p.body[:2], b"\x00\x00", hexs(raw))
        pr, end = P.R.decode_props(p.body, 2)
        self.assertEqual(end, len(p.body), "trailing bytes after the properties: " + hexs(raw))
        self.assertEqual(pr, {P.R.PROP_RECEIVE_MAXIMUM: P.RECEIVE_MAXIMUM,
                              P.R.PROP_MAXIMUM_PACKET_SIZE: P.MAX_PACKET_SIZE,
                              P.R.PROP_TOPIC_ALIAS_MAXIMUM: P.TOPIC_ALIAS_MAX}, hexs(raw))
        # Each property once, 3 + 5 + 3 bytes: the block is 11 bytes long.
        self.assertEqual(len(raw), 2 + 2 + 1 + 11, hexs(raw))

    def test_pingreq_pingresp(self):
        """[MQTT-3.12.4-1]: PINGREQ gets PINGRESP d0 00, on both versions."""
        for v in (V311, V5):
            c = self.client(version=v)
            c.send(b"\xc0\x00")
            self.expect(c, b"\xd0\x00", "PINGRESP v%d" % v)

    # ---- protocol name and level -------------------------------------

    def test_protocol_level_3_refused_311(self):
        """[MQTT-3.1.2-2] (3.1.1): level 3 -> CONNACK 0x01 (20 02 00 01),
        then the connection is closed [MQTT-3.2.2-5] (3.1.1)."""
        c = self.open()
        c.send(connect(self.uid(), version=3))
        self.expect_closed(c, {P.connack311(0, 1)}, what="level 3")

    def test_protocol_level_6_refused(self):
        """[MQTT-3.1.2-2] (3.1.1 and 5.0): an unknown level gets CONNACK
        0x01 in the 3.1.1 form, or 0x84 in the 5.0 form, then close."""
        c = self.open()
        c.send(connect(self.uid(), version=6))
        self.expect_closed(c, {P.connack311(0, 1), P.connack5_refused(0x84)}, what="level 6")

    def test_protocol_name_wrong(self):
        """[MQTT-3.1.2-1]: a protocol name other than "MQTT" may be closed
        at once or answered 0x01 / 0x84; nothing else is allowed."""
        for name, level in (("MQIsdp", 4), ("MQTX", 5), ("mqtt", 4)):
            c = self.open()
            c.send(connect(self.uid(), version=level, protocol_name=name))
            self.expect_closed(c, {b"", P.connack311(0, 1), P.connack5_refused(0x84)},
                               what="protocol name %r" % name)

    # ---- connect flags -----------------------------------------------

    def test_reserved_flag_closes_311(self):
        """[MQTT-3.1.2-3] (3.1.1): reserved flag 1 -> the server closes the
        connection without a CONNACK."""
        c = self.open()
        c.send(connect(self.uid(), flags_or=0x01))
        self.expect_closed(c, {b""}, what="reserved flag")

    def test_reserved_flag_closes_v5(self):
        """[MQTT-3.1.2-3] (5.0): reserved flag 1 is a Malformed Packet:
        closed, optionally after CONNACK 0x81 (20 03 00 81 00)."""
        c = self.open(V5)
        c.send(connect(self.uid(), version=V5, flags_or=0x01))
        self.expect_closed(c, {b"", P.connack5_refused(0x81)}, what="reserved flag v5")

    def _will_flag_case(self, flags_or, will=None, what=""):
        c = self.open()
        c.send(connect(self.uid(), flags_or=flags_or, will=will))
        self.expect_closed(c, {b""}, what=what + " (3.1.1)")
        c = self.open(V5)
        c.send(connect(self.uid(), version=V5, flags_or=flags_or, will=will))
        self.expect_closed(c, {b"", P.connack5_refused(0x81), P.connack5_refused(0x82)},
                           what=what + " (5.0)")

    def test_will_qos_without_will_flag(self):
        """[MQTT-3.1.2-11] [MQTT-3.1.2-13] (3.1.1) / [MQTT-3.1.2-11] (5.0):
        Will QoS 1 with Will Flag 0 -> closed (5.0: optionally CONNACK
        0x81/0x82 first)."""
        self._will_flag_case(0x08, what="will qos 1 without will flag")
        self._will_flag_case(0x10, what="will qos 2 without will flag")

    def test_will_retain_without_will_flag(self):
        """[MQTT-3.1.2-11] [MQTT-3.1.2-15] (3.1.1) / [MQTT-3.1.2-13] (5.0):
        Will Retain 1 with Will Flag 0 -> closed."""
        self._will_flag_case(0x20, what="will retain without will flag")

    def test_will_qos_3(self):
        """[MQTT-3.1.2-14] (3.1.1) / [MQTT-3.1.2-12] (5.0): Will QoS 3 ->
        closed."""
        self._will_flag_case(0x18, will=dict(topic="conf/w", payload=b"x"), what="will qos 3")

    def test_will_qos_0_1_2_accepted(self):
        """[MQTT-3.1.2-12] (3.1.1) / [MQTT-3.1.2-9] (5.0): with Will Flag 1
        the Will QoS may be 0, 1 or 2, with or without Will Retain."""
        for v in (V311, V5):
            for q in (0, 1, 2):
                for retain in (False, True):
                    c = self.client(version=v, will=dict(topic=self.topic("w"), payload=b"x",
                                                         qos=q, retain=retain))
                    c.do_disconnect()

    def test_password_without_username_311(self):
        """[MQTT-3.1.2-22] (3.1.1): Password Flag 1 with User Name Flag 0 ->
        closed without CONNACK."""
        c = self.open()
        c.send(connect(self.uid(), password="secret"))
        self.expect_closed(c, {b""}, what="password without username")

    def test_password_without_username_v5_allowed(self):
        """[MQTT-3.1.2-19] (5.0) §3.1.2.9 (a password without a user name is
        allowed in 5.0):
        the anonymous application is accepted."""
        c = self.client(version=V5, password="secret")
        c.do_disconnect()

    def test_username_without_password(self):
        """[MQTT-3.1.2-18] [MQTT-3.1.2-19] (3.1.1): a User Name without a
        Password is well formed; paho.conf lets the application in."""
        self.client(username="someone")
        self.client(version=V5, username="someone")

    # ---- client identifier -------------------------------------------

    def test_empty_client_id_clean_session_0_311(self):
        """[MQTT-3.1.3-8] (3.1.1): zero-length client id with Clean Session
        0 -> CONNACK 0x02 (20 02 00 02), Session Present 0 [MQTT-3.2.2-4]
        (3.1.1), then closed [MQTT-3.2.2-5] (3.1.1)."""
        c = self.open()
        c.send(connect("", clean=False))
        self.expect_closed(c, {P.connack311(0, 2)}, what="empty id, clean 0")

    def test_empty_client_id_clean_session_1_311(self):
        """[MQTT-3.1.3-6] [MQTT-3.1.3-7] (3.1.1): zero-length client id with
        Clean Session 1 is accepted (20 02 00 00) and works."""
        c = self.client(client_id="")
        t = self.topic("anon")
        self.sub(c, [(t, 0)])
        c.send(P.publish(t, b"me"))
        self.expect_publish(c, t, b"me")

    def test_assigned_client_identifier_v5(self):
        """[MQTT-3.2.2-16] [MQTT-3.1.3-7] (5.0): a zero-length client id gets
        an Assigned Client Identifier, new for each connection, also with
        Clean Start 0 ([MQTT-3.1.3-6] (5.0))."""
        seen = set()
        for clean in (True, True, False):
            c = self.client(client_id="", version=V5, clean=clean)
            pr = c.connack[2]
            self.assertIn(P.PROP_ASSIGNED_CLIENT_ID, pr, "no Assigned Client Identifier")
            aid = pr[P.PROP_ASSIGNED_CLIENT_ID]
            self.assertTrue(aid, "empty Assigned Client Identifier")
            self.assertNotIn(aid, seen, "Assigned Client Identifier reused")
            seen.add(aid)
        # A named client gets none.
        c = self.client(version=V5)
        self.assertNotIn(P.PROP_ASSIGNED_CLIENT_ID, c.connack[2])

    def test_client_id_invalid_utf8(self):
        """[MQTT-1.5.3-1] (3.1.1) / [MQTT-1.5.4-1] [MQTT-3.1.3-4] (5.0): an
        ill-formed UTF-8 client id -> closed (5.0: optionally CONNACK 0x81
        or 0x85 first)."""
        for bad in (b"\xc3\x28", b"a\x00b", b"\xed\xa0\x80"):
            c = self.open()
            c.send(connect(bad))
            self.expect_closed(c, {b"", P.connack311(0, 2)}, what="client id %s" % hexs(bad))
            c = self.open(V5)
            c.send(connect(bad, version=V5))
            self.expect_closed(c, {b"", P.connack5_refused(0x81), P.connack5_refused(0x85)},
                               what="client id %s (5.0)" % hexs(bad))

    # ---- packet order ------------------------------------------------

    def test_first_packet_not_connect_closes(self):
        """[MQTT-3.1.0-1]: a first packet other than CONNECT -> the server
        closes the connection and sends nothing."""
        cases = [b"\xc0\x00",
                 P.publish("conf/x", b"hi"),
                 P.subscribe(1, [("conf/x", 0)]),
                 P.disconnect()]
        for data in cases:
            c = self.open()
            c.send(data)
            self.expect_closed(c, {b""}, what="first packet %s" % hexs(data[:4]))

    def test_second_connect_closes_311(self):
        """[MQTT-3.1.0-2] (3.1.1): a second CONNECT is a protocol violation:
        the connection is closed."""
        c = self.client()
        c.send(connect(self.uid()))
        self.expect_closed(c, {b""}, what="second CONNECT")

    def test_second_connect_closes_v5(self):
        """[MQTT-3.1.0-2] (5.0): a second CONNECT is a Protocol Error:
        DISCONNECT 0x82 (e0 01 82), then closed."""
        c = self.client(version=V5)
        c.send(connect(self.uid(), version=V5))
        self.expect_closed(c, {P.disconnect5(0x82)}, what="second CONNECT v5")

    def test_refused_connect_ignores_what_follows(self):
        """[MQTT-3.1.4-6] (5.0) / [MQTT-3.2.2-5] (3.1.1): after a refused
        CONNECT nothing the client sent behind it is processed."""
        t = self.topic("after-refusal")
        s = self.client()
        self.sub(s, [(t, 0)])
        c = self.open()
        c.send(connect("", clean=False) + P.publish(t, b"must not arrive"))
        self.expect_closed(c, {P.connack311(0, 2)})
        self.expect_silence(s, 0.5, "no message from a refused connection")

    # ---- session present ---------------------------------------------

    def test_session_present_311(self):
        """[MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-3] (3.1.1): Clean
        Session 1 -> 20 02 00 00; Clean Session 0 without a stored session
        -> 20 02 00 00; Clean Session 0 with one -> 20 02 01 00."""
        cid = self.uid()
        c = self.client(cid, clean=False, expect_present=False)
        c.do_disconnect()
        c = self.client(cid, clean=False, expect_present=True)
        c.do_disconnect()
        c = self.client(cid, clean=True, expect_present=False)
        c.do_disconnect()
        # Clean Session 1 discarded it: nothing to resume.
        c = self.client(cid, clean=False, expect_present=False)
        c.do_disconnect()

    def test_session_present_v5(self):
        """[MQTT-3.2.2-2] [MQTT-3.2.2-3] (5.0) [MQTT-3.1.2-4] [MQTT-3.1.2-5]
        [MQTT-3.1.2-6] (5.0): Clean Start 0 with a session -> Session
        Present 1; Clean Start 1 -> 0 and the session is discarded."""
        cid = self.uid()
        exp = [(P.R.PROP_SESSION_EXPIRY, 60)]
        c = self.client(cid, version=V5, clean=False, properties=exp, expect_present=False)
        c.do_disconnect()
        c = self.client(cid, version=V5, clean=False, properties=exp, expect_present=True)
        c.do_disconnect()
        c = self.client(cid, version=V5, clean=True, properties=exp, expect_present=False)
        c.do_disconnect()

    def test_refused_connack_session_present_0(self):
        """[MQTT-3.2.2-4] (3.1.1) / [MQTT-3.2.2-6] (5.0): a refusing CONNACK
        has Session Present 0, even when a session exists."""
        cid = self.uid()
        c = self.client(cid, version=V5, clean=False, properties=[(P.R.PROP_SESSION_EXPIRY, 60)])
        c.do_disconnect()
        c = self.open(V5)
        c.send(connect(cid, version=V5, clean=False,
                       properties=[(P.R.PROP_SESSION_EXPIRY, 60), (P.PROP_AUTH_METHOD, "SCRAM")]))
        got = self.expect_closed(c, {P.connack5_refused(0x8C)})
        self.assertEqual(got[2], 0)
        # 3.1.1: the same with a refusal for a zero-length id.
        c = self.open()
        c.send(connect("", clean=False))
        got = self.expect_closed(c, {P.connack311(0, 2)})
        self.assertEqual(got[2], 0)

    # ---- keepalive ---------------------------------------------------

    def test_server_keep_alive(self):
        """[MQTT-3.2.2-21] [MQTT-3.2.2-22] (5.0): a client asking for 120 s
        gets Server Keep Alive 60 (paho.conf max_keepalive); one asking for
        30 s gets none. A 3.1.1 client is not told (20 02 00 00)."""
        c = self.client(version=V5, keepalive=120)
        self.assertEqual(c.connack[2].get(P.PROP_SERVER_KEEPALIVE), 60, c.connack)
        c = self.client(version=V5, keepalive=30)
        self.assertNotIn(P.PROP_SERVER_KEEPALIVE, c.connack[2])
        self.client(version=V311, keepalive=120)

    def test_keepalive_timeout_311(self):
        """[MQTT-3.1.2-24] (3.1.1): keepalive 1 s and silence -> closed
        after 1.5 s (not before 1 s, well before 4 s)."""
        c = self.client(keepalive=1)
        t0 = time.monotonic()
        self.expect_closed(c, {b""}, timeout=4.0, what="keepalive")
        self.assertGreaterEqual(time.monotonic() - t0, 1.0, "closed before the keepalive")

    def test_keepalive_timeout_v5(self):
        """[MQTT-3.1.2-22] (5.0): keepalive 1 s and silence -> DISCONNECT
        0x8D (e0 01 8d), then closed."""
        c = self.client(version=V5, keepalive=1)
        t0 = time.monotonic()
        self.expect_closed(c, {P.disconnect5(0x8D)}, timeout=4.0, what="keepalive v5")
        self.assertGreaterEqual(time.monotonic() - t0, 1.0, "closed before the keepalive")

    def test_keepalive_kept_by_pingreq(self):
        """[MQTT-3.1.2-23] (3.1.1) / [MQTT-3.1.2-20] (5.0): any control
        packet within the keepalive (here PINGREQ) keeps the connection."""
        c = self.client(keepalive=1)
        for _ in range(5):
            time.sleep(0.5)
            c.send(b"\xc0\x00")
            self.expect(c, b"\xd0\x00", "PINGRESP")

    # ---- CONNECT properties ------------------------------------------

    def test_auth_method_refused(self):
        """[MQTT-4.12.0-1] (5.0): an Authentication Method the server does
        not support -> CONNACK 0x8C (20 03 00 8c 00), then closed."""
        c = self.open(V5)
        c.send(connect(self.uid(), version=V5,
                       properties=[(P.PROP_AUTH_METHOD, "SCRAM-SHA-1"),
                                   (P.PROP_AUTH_DATA, b"client-first")]))
        self.expect_closed(c, {P.connack5_refused(0x8C)}, what="AUTH method")

    def test_receive_maximum_zero_refused(self):
        """[MQTT-4.13.1-1] (5.0) §3.1.2.11.3: Receive Maximum 0 is a Protocol
        Error; likewise
        Maximum Packet Size 0 (§3.1.2.11.4): closed, optionally after
        CONNACK 0x82 (20 03 00 82 00)."""
        for prop in ((P.R.PROP_RECEIVE_MAXIMUM, 0), (P.R.PROP_MAXIMUM_PACKET_SIZE, 0)):
            c = self.open(V5)
            c.send(connect(self.uid(), version=V5, properties=[prop]))
            self.expect_closed(c, {b"", P.connack5_refused(0x82), P.connack5_refused(0x81)},
                               what="property %r" % (prop,))

    def test_connect_trailing_bytes(self):
        """[MQTT-3.1.4-1] (3.1.1 and 5.0): a CONNECT longer than its fields
        is malformed: closed (5.0: optionally CONNACK 0x81)."""
        good = connect(self.uid())
        bad = P.packet(0x10, good[2:] + b"\x00")
        c = self.open()
        c.send(bad)
        self.expect_closed(c, {b""}, what="trailing byte")
        good = connect(self.uid(), version=V5)
        c = self.open(V5)
        c.send(P.packet(0x10, good[2:] + b"\x00"))
        self.expect_closed(c, {b"", P.connack5_refused(0x81)}, what="trailing byte v5")

    def test_connect_trickled_byte_by_byte(self):
        """[MQTT-3.1.4-4] (3.1.1): a valid CONNECT that arrives one byte at
        a time is still accepted with 20 02 00 00."""
        c = self.open()
        for b in connect(self.uid(), keepalive=30):
            c.send(bytes([b]))
            time.sleep(0.005)
        self.expect(c, P.connack311(0, 0), "CONNACK")

    def test_disconnect_ends_connection(self):
        """[MQTT-3.14.4-1] [MQTT-3.14.4-2] (3.1.1): after DISCONNECT the
        server closes the connection and sends nothing."""
        for v in (V311, V5):
            c = self.client(version=v)
            c.send(P.disconnect(v))
            self.expect_closed(c, {b""}, what="after DISCONNECT v%d" % v)


if __name__ == "__main__":
    unittest.main(verbosity=2)
