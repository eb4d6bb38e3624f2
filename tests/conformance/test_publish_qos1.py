"""Conformance: PUBLISH at QoS 1 (PUBACK bytes, delivery with a packet id,
ordering, QoS downgrade, DUP handling)."""

import unittest

import packets as P
from packets import PUBACK, V311, V5, publish, puback


class PublishQoS1Test(P.ConfTestCase):

    def test_puback_bytes_311(self):
        """[MQTT-3.3.4-1] [MQTT-4.3.2-2] [MQTT-2.3.1-6] (3.1.1): QoS 1
        PUBLISH id 0x1234 -> PUBACK 40 02 12 34."""
        c = self.client()
        c.send(publish(self.topic("a"), b"x", qos=1, packet_id=0x1234))
        self.expect(c, bytes.fromhex("40021234"), "PUBACK")

    def test_puback_bytes_v5(self):
        """[MQTT-3.3.4-1] [MQTT-2.2.1-5] (5.0): PUBACK 40 02 12 34 (or the
        same with reason 0x00 / 0x10 spelled out: §3.4.2.1)."""
        c = self.client(version=V5)
        t = self.topic("a")
        s = self.client(version=V5)
        self.sub(s, [(t, 1)])
        c.send(publish(t, b"x", qos=1, packet_id=0x1234, version=V5))
        self.expect_ack(c, PUBACK, 0x1234)
        # Without any subscriber 0x10 (No matching subscribers) is allowed.
        c.send(publish(self.topic("nobody"), b"x", qos=1, packet_id=0xFFFF, version=V5))
        self.expect(c, P.acks_allowed(PUBACK, 0xFFFF, V5)
                    | P.acks_allowed(PUBACK, 0xFFFF, V5, 0x10), "PUBACK without subscribers")

    def test_qos1_delivery_with_packet_id(self):
        """[MQTT-4.3.2-1] [MQTT-2.3.1-2] [MQTT-3.3.1-3] (3.1.1): the
        subscriber gets 32 .. topic, a non-zero packet id of the server's,
        payload, DUP 0; after its PUBACK the next message may reuse nothing
        still in flight."""
        for v in (V311, V5):
            t = self.topic("q1", str(v))
            s = self.client(version=v)
            self.sub(s, [(t, 1)])
            p = self.client(version=v)
            p.send(publish(t, b"one", qos=1, packet_id=77, version=v))
            self.expect_ack(p, PUBACK, 77)
            a = self.expect_publish(s, t, b"one", qos=1, what="QoS 1 delivery v%d" % v)
            p.send(publish(t, b"two", qos=1, packet_id=78, version=v))
            self.expect_ack(p, PUBACK, 78)
            b = self.expect_publish(s, t, b"two", qos=1, what="second delivery v%d" % v)
            self.assertNotEqual(a, b, "[MQTT-2.3.1-2] packet id %d reused while in flight" % a)
            s.send(puback(a, v) + puback(b, v))
            self.expect_silence(s, 0.3, "no redelivery after PUBACK")

    def test_dup_of_outgoing_is_independent(self):
        """[MQTT-3.3.1-3]: the DUP flag of an inbound PUBLISH is not
        propagated: a first delivery has DUP 0."""
        t = self.topic("dup")
        s = self.client()
        self.sub(s, [(t, 1)])
        p = self.client()
        p.send(publish(t, b"d", qos=1, packet_id=5, dup=True))
        self.expect(p, P.ack(PUBACK, 5), "PUBACK")
        pid = self.expect_publish(s, t, b"d", qos=1, dup=False, what="delivery with DUP 0")
        s.send(puback(pid))

    def test_puback_order(self):
        """[MQTT-4.6.0-2]: PUBACKs are sent in the order the PUBLISH
        packets were received (20 QoS 1 in one write, ids descending)."""
        for v in (V311, V5):
            t = self.topic("order", str(v))
            c = self.client(version=v)
            ids = list(range(900, 880, -1))
            c.send(b"".join(publish(t, b"m%d" % i, qos=1, packet_id=i, version=v) for i in ids))
            for i in ids:
                self.expect_ack(c, PUBACK, i, what="PUBACK %d in order (v%d)" % (i, v))

    def test_delivery_order(self):
        """[MQTT-4.6.0-5] (3.1.1) / [MQTT-4.6.0-6] (5.0): QoS 1 messages
        reach the subscriber in publishing order, ids in sending order."""
        t = self.topic("ord")
        s = self.client()
        self.sub(s, [(t, 1)])
        p = self.client()
        p.send(b"".join(publish(t, b"n%02d" % i, qos=1, packet_id=i + 1) for i in range(30)))
        got = []
        for i in range(30):
            pid = self.expect_publish(s, t, b"n%02d" % i, qos=1, what="message %d" % i)
            got.append(pid)
            s.send(puback(pid))
        self.assertEqual(len(set(got)), 30, "packet ids repeated: %r" % got)

    def test_downgrade_to_subscription_qos(self):
        """[MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0): QoS 1 to a QoS 0
        subscription arrives as QoS 0 (30 .., no packet id)."""
        for v in (V311, V5):
            t = self.topic("down", str(v))
            s = self.client(version=v)
            self.sub(s, [(t, 0)])
            p = self.client(version=v)
            p.send(publish(t, b"down", qos=1, packet_id=3, version=v))
            self.expect_ack(p, PUBACK, 3)
            self.expect(s, publish(t, b"down", version=v), "QoS 0 delivery v%d" % v)

    def test_retransmitted_qos1_acknowledged_again(self):
        """[MQTT-4.3.2-2] (3.1.1) / [MQTT-4.3.2-4] (5.0): the receiver
        acknowledges every QoS 1 PUBLISH, a DUP retransmission of an
        already acknowledged id included."""
        c = self.client()
        t = self.topic("re")
        c.send(publish(t, b"r", qos=1, packet_id=9))
        self.expect(c, P.ack(PUBACK, 9), "PUBACK")
        c.send(publish(t, b"r", qos=1, packet_id=9, dup=True))
        self.expect(c, P.ack(PUBACK, 9), "PUBACK of the retransmission")

    def test_unknown_puback_ignored(self):
        """[MQTT-4.3.2-1]: a PUBACK for an id the server never used does not
        end the connection or disturb the flow."""
        t = self.topic("unk")
        s = self.client()
        self.sub(s, [(t, 1)])
        s.send(puback(4242))
        p = self.client()
        p.send(publish(t, b"still", qos=1, packet_id=1))
        self.expect(p, P.ack(PUBACK, 1))
        pid = self.expect_publish(s, t, b"still", qos=1)
        s.send(puback(pid))

    def test_publish_qos1_packet_id_zero_closes(self):
        """[MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3] (5.0): a QoS 1 PUBLISH
        with packet id 0 -> closed (5.0: DISCONNECT 0x81 or 0x82)."""
        c = self.client()
        c.send(publish(self.topic("z"), b"x", qos=1, packet_id=0))
        self.expect_closed(c, {b""})
        c = self.client(version=V5)
        c.send(publish(self.topic("z"), b"x", qos=1, packet_id=0, version=V5))
        self.expect_closed(c, {P.disconnect5(0x81), P.disconnect5(0x82)})


if __name__ == "__main__":
    unittest.main(verbosity=2)
