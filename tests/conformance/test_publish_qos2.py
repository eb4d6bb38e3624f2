"""Conformance: PUBLISH at QoS 2, both directions: PUBREC / PUBREL /
PUBCOMP bytes, de-duplication of a retransmission before PUBREL, the
server's own QoS 2 sender side and its Receive Maximum."""

import unittest

import packets as P
from packets import PUBCOMP, PUBREC, PUBREL, V311, V5, publish, pubcomp, pubrec, pubrel


class PublishQoS2Test(P.ConfTestCase):

    def test_inbound_flow_bytes_311(self):
        """[MQTT-4.3.3-2] [MQTT-3.3.4-1] [MQTT-3.6.4-1] (3.1.1): PUBLISH QoS 2
        id 0x0102 -> PUBREC 50 02 01 02; PUBREL 62 02 01 02 -> PUBCOMP
        70 02 01 02; the subscriber gets the message exactly once."""
        t = self.topic("in")
        s = self.client()
        self.sub(s, [(t, 0)])
        c = self.client()
        c.send(publish(t, b"exactly once", qos=2, packet_id=0x0102))
        self.expect(c, bytes.fromhex("50020102"), "PUBREC")
        c.send(bytes.fromhex("62020102"))
        self.expect(c, bytes.fromhex("70020102"), "PUBCOMP")
        self.expect(s, publish(t, b"exactly once"), "delivery")
        self.expect_silence(s, 0.3, "a single delivery")

    def test_inbound_flow_bytes_v5(self):
        """[MQTT-4.3.3-8] [MQTT-4.3.3-11] (5.0): the same flow on 5.0 (each
        acknowledgement 50/70 02 id, or with reason 0x00 spelled out)."""
        t = self.topic("in5")
        s = self.client(version=V5)
        self.sub(s, [(t, 2)])
        c = self.client(version=V5)
        c.send(publish(t, b"v5", qos=2, packet_id=0xBEEF, version=V5))
        self.expect_ack(c, PUBREC, 0xBEEF)
        c.send(pubrel(0xBEEF, V5))
        self.expect_ack(c, PUBCOMP, 0xBEEF)
        pid = self.expect_publish(s, t, b"v5", qos=2, what="QoS 2 delivery")
        s.send(pubrec(pid, V5))
        self.expect_ack(s, PUBREL, pid)
        s.send(pubcomp(pid, V5))

    def test_duplicate_before_pubrel_not_redelivered(self):
        """[MQTT-4.3.3-2] (3.1.1) / [MQTT-4.3.3-9] [MQTT-4.3.3-10] (5.0):
        until PUBREL, a retransmission (DUP 1) of the same packet id gets a
        PUBREC again and is not delivered twice; after PUBCOMP the same id
        starts a new message ([MQTT-4.3.3-12] (5.0))."""
        for v in (V311, V5):
            t = self.topic("dedup", str(v))
            s = self.client(version=v)
            self.sub(s, [(t, 0)])
            c = self.client(version=v)
            c.send(publish(t, b"first", qos=2, packet_id=5, version=v))
            self.expect_ack(c, PUBREC, 5)
            self.expect(s, publish(t, b"first", version=v), "delivery")
            for _ in range(3):
                c.send(publish(t, b"first", qos=2, packet_id=5, dup=True, version=v))
                self.expect_ack(c, PUBREC, 5, what="PUBREC for the retransmission")
            self.expect_silence(s, 0.4, "no duplicate delivery (v%d)" % v)
            c.send(pubrel(5, v))
            self.expect_ack(c, PUBCOMP, 5)
            c.send(publish(t, b"second", qos=2, packet_id=5, version=v))
            self.expect_ack(c, PUBREC, 5)
            self.expect(s, publish(t, b"second", version=v), "a new message on the same id")
            c.send(pubrel(5, v))
            self.expect_ack(c, PUBCOMP, 5)

    def test_outbound_flow(self):
        """[MQTT-4.3.3-1] [MQTT-4.3.3-3] (3.1.1) / [MQTT-4.3.3-4]
        [MQTT-4.3.3-5] (5.0): to a QoS 2 subscriber the server sends
        34 .. id payload, answers PUBREC with PUBREL 62 02 id, and is done
        at PUBCOMP (nothing more is sent)."""
        t = self.topic("out")
        s = self.client()
        self.sub(s, [(t, 2)])
        p = self.client()
        p.send(publish(t, b"to you", qos=2, packet_id=1))
        self.expect(p, pubrec(1))
        pid = self.expect_publish(s, t, b"to you", qos=2, what="QoS 2 delivery")
        s.send(pubrec(pid))
        self.expect(s, pubrel(pid), "PUBREL")
        s.send(pubcomp(pid))
        self.expect_silence(s, 0.3, "nothing after PUBCOMP")
        p.send(pubrel(1))
        self.expect(p, pubcomp(1))

    def test_pubrel_not_publish_resent_on_reconnect(self):
        """[MQTT-4.4.0-1] (3.1.1 and 5.0) [MQTT-4.3.3-6] (5.0): a persistent
        subscriber that got PUBREL and left without PUBCOMP is sent the
        PUBREL again on reconnect (62 02 id), not the PUBLISH."""
        t = self.topic("rel")
        cid = self.uid()
        s = self.client(cid, clean=False)
        self.sub(s, [(t, 2)])
        p = self.client()
        p.send(publish(t, b"m", qos=2, packet_id=1) + pubrel(1))
        pid = self.expect_publish(s, t, b"m", qos=2)
        s.send(pubrec(pid))
        self.expect(s, pubrel(pid))
        s.abort()
        self.settle(0.2)
        s = self.client(cid, clean=False, expect_present=True)
        self.expect(s, pubrel(pid), "PUBREL resent")
        s.send(pubcomp(pid))
        self.expect_silence(s, 0.3)

    def test_publish_resent_with_dup_before_pubrec(self):
        """[MQTT-4.4.0-1]: a QoS 2 PUBLISH never acknowledged with PUBREC is
        resent on reconnect with DUP 1 and the same packet id."""
        t = self.topic("dup2")
        cid = self.uid()
        s = self.client(cid, clean=False)
        self.sub(s, [(t, 2)])
        p = self.client()
        p.send(publish(t, b"again", qos=2, packet_id=1) + pubrel(1))
        pid = self.expect_publish(s, t, b"again", qos=2)
        s.abort()
        self.settle(0.2)
        s = self.client(cid, clean=False, expect_present=True)
        self.expect(s, publish(t, b"again", qos=2, packet_id=pid, dup=True), "resent with DUP")
        s.send(pubrec(pid))
        self.expect(s, pubrel(pid))
        s.send(pubcomp(pid))

    def test_pubrec_order(self):
        """[MQTT-4.6.0-3] (3.1.1 and 5.0): PUBRECs go out in the order the
        QoS 2 PUBLISH packets arrived; PUBCOMPs follow the PUBRELs."""
        c = self.client()
        t = self.topic("ord")
        ids = [40, 7, 300, 2, 65535, 1000]
        c.send(b"".join(publish(t, b"x", qos=2, packet_id=i) for i in ids))
        for i in ids:
            self.expect(c, pubrec(i), "PUBREC %d in order" % i)
        c.send(b"".join(pubrel(i) for i in ids))
        for i in ids:
            self.expect(c, pubcomp(i), "PUBCOMP %d in order" % i)

    def test_downgrade_qos2_to_qos1(self):
        """[MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0): QoS 2 to a QoS 1
        subscription arrives at QoS 1."""
        t = self.topic("d")
        s = self.client()
        self.sub(s, [(t, 1)])
        p = self.client()
        p.send(publish(t, b"d", qos=2, packet_id=9))
        self.expect(p, pubrec(9))
        pid = self.expect_publish(s, t, b"d", qos=1)
        s.send(P.puback(pid))
        p.send(pubrel(9))
        self.expect(p, pubcomp(9))

    def test_pubrel_unknown_id(self):
        """[MQTT-4.3.3-11] (5.0) / [MQTT-4.3.3-2] (3.1.1): a PUBREL for an
        id with no message still gets a PUBCOMP (5.0: reason 0x92 Packet
        Identifier not found, or 0x00)."""
        c = self.client()
        c.send(pubrel(123))
        self.expect(c, pubcomp(123))
        c = self.client(version=V5)
        c.send(pubrel(123, V5))
        self.expect(c, P.acks_allowed(PUBCOMP, 123, V5, 0x92) | P.acks_allowed(PUBCOMP, 123, V5),
                    "PUBCOMP for an unknown id")

    def test_pubrel_reserved_flags_close(self):
        """[MQTT-3.6.1-1] (3.1.1 and 5.0): PUBREL flags other than 0010 ->
        closed (5.0: DISCONNECT 0x81)."""
        for v, allowed in ((V311, {b""}), (V5, {P.disconnect5(0x81)})):
            c = self.client(version=v)
            c.send(publish(self.topic("f"), b"x", qos=2, packet_id=1, version=v))
            self.expect_ack(c, PUBREC, 1)
            c.send(pubrel(1, v, first_byte=0x60))
            self.expect_closed(c, allowed, what="PUBREL flags 0000 v%d" % v)

    def test_pubrec_error_ends_outbound_flow(self):
        """[MQTT-4.3.3-4] [MQTT-4.4.0-2] (5.0): a PUBREC with reason >= 0x80
        from the subscriber ends the flow: no PUBREL, not resent."""
        t = self.topic("refused")
        cid = self.uid()
        s = self.client(cid, version=V5, clean=False, properties=[(P.R.PROP_SESSION_EXPIRY, 60)])
        self.sub(s, [(t, 2)])
        p = self.client(version=V5)
        p.send(publish(t, b"no thanks", qos=2, packet_id=1, version=V5))
        self.expect_ack(p, PUBREC, 1)
        pid = self.expect_publish(s, t, b"no thanks", qos=2)
        s.send(pubrec(pid, V5, 0x80))
        self.expect_silence(s, 0.3, "no PUBREL after a refusing PUBREC")
        s.do_disconnect()
        s = self.client(cid, version=V5, clean=False, properties=[(P.R.PROP_SESSION_EXPIRY, 60)],
                        expect_present=True)
        self.expect_silence(s, 0.4, "nothing resent")

    def test_receive_maximum_exceeded(self):
        """[MQTT-3.3.4-7] (5.0): with Receive Maximum 64 (paho.conf), 64
        unreleased QoS 2 messages are accepted (PUBREC each) and the 65th
        gets DISCONNECT 0x93 (e0 01 93), then the connection is closed."""
        t = self.topic("flood")
        c = self.client(version=V5)
        n = P.RECEIVE_MAXIMUM
        c.send(b"".join(publish(t, b"x", qos=2, packet_id=i + 1, version=V5) for i in range(n)))
        for i in range(n):
            self.expect_ack(c, PUBREC, i + 1)
        c.send(publish(t, b"x", qos=2, packet_id=n + 1, version=V5))
        self.expect_closed(c, {P.disconnect5(0x93)}, what="Receive Maximum exceeded")

    def test_receive_maximum_not_exceeded_when_released(self):
        """[MQTT-3.3.4-7] (5.0): messages released with PUBREL free their
        slot: 200 QoS 2 messages in sequence are all accepted."""
        t = self.topic("flow")
        c = self.client(version=V5)
        for i in range(1, 201):
            c.send(publish(t, b"x", qos=2, packet_id=i, version=V5))
            self.expect_ack(c, PUBREC, i)
            c.send(pubrel(i, V5))
            self.expect_ack(c, PUBCOMP, i)


if __name__ == "__main__":
    unittest.main(verbosity=2)
