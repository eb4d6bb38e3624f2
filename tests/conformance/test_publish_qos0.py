"""Conformance: PUBLISH at QoS 0, topic names and topic matching.

The bytes a subscriber receives are compared with the exact PUBLISH the
server must write: for 3.1.1 and for 5.0 without per-hop properties (no
Topic Alias Maximum, Subscription Identifier or Message Expiry involved)
the delivered packet is fully determined.
"""

import unittest

import packets as P
from packets import V311, V5, publish


class PublishQoS0Test(P.ConfTestCase):

    def test_qos0_delivery_bytes_311(self):
        """[MQTT-3.3.1-2] [MQTT-3.3.2-3] [MQTT-3.3.1-9] (3.1.1) [MQTT-4.3.1-1]
        (3.1.1): a QoS 0 PUBLISH reaches the subscriber as exactly the same
        bytes (DUP 0, RETAIN 0, no packet id); the publisher gets no
        acknowledgement [MQTT-3.3.4-1]."""
        t = self.topic("a")
        s = self.client()
        self.sub(s, [(t, 0)])
        p = self.client()
        data = publish(t, b"\x00\x01binary\xff payload")
        p.send(data)
        self.expect(s, data, "delivered PUBLISH")
        self.expect_silence(p, 0.3, "no acknowledgement of QoS 0")

    def test_qos0_delivery_bytes_v5(self):
        """[MQTT-3.3.1-2] [MQTT-3.3.2-3] [MQTT-3.3.4-1] (5.0): the same on
        5.0: 30 .. topic, property length 0, payload."""
        t = self.topic("a")
        s = self.client(version=V5)
        self.sub(s, [(t, 0)])
        p = self.client(version=V5)
        data = publish(t, b"hello v5", version=V5)
        p.send(data)
        self.expect(s, data, "delivered PUBLISH v5")
        self.expect_silence(p, 0.3, "no acknowledgement of QoS 0")

    def test_cross_version_delivery(self):
        """[MQTT-3.3.2-3]: a 5.0 publisher's message reaches a 3.1.1
        subscriber in 3.1.1 form and the other way round."""
        t = self.topic("x")
        s4 = self.client()
        self.sub(s4, [(t, 0)])
        s5 = self.client(version=V5)
        self.sub(s5, [(t, 0)])
        p5 = self.client(version=V5)
        p5.send(publish(t, b"from5", version=V5))
        self.expect(s4, publish(t, b"from5"), "v5 -> v3.1.1")
        self.expect(s5, publish(t, b"from5", version=V5), "v5 -> v5")
        p4 = self.client()
        p4.send(publish(t, b"from4"))
        self.expect(s4, publish(t, b"from4"), "v3.1.1 -> v3.1.1")
        self.expect(s5, publish(t, b"from4", version=V5), "v3.1.1 -> v5")

    def test_empty_payload(self):
        """[MQTT-3.3.3] a zero-length payload is valid and delivered."""
        t = self.topic("empty")
        s = self.client()
        self.sub(s, [(t, 0)])
        p = self.client()
        p.send(publish(t, b""))
        self.expect(s, publish(t, b""), "empty payload")

    def test_qos0_stays_qos0_for_qos2_subscription(self):
        """[MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0): delivered QoS is
        the minimum of the message's and the subscription's: QoS 0 to a
        QoS 2 subscription arrives at QoS 0."""
        for v in (V311, V5):
            t = self.topic("min", str(v))
            s = self.client(version=v)
            self.sub(s, [(t, 2)])
            p = self.client(version=v)
            p.send(publish(t, b"q0", version=v))
            self.expect(s, publish(t, b"q0", version=v), "QoS 0 delivery v%d" % v)

    def test_qos0_order(self):
        """[MQTT-4.6.0-5] (3.1.1) / [MQTT-4.6.0-6] (5.0): messages on one
        topic are delivered in the order they were published."""
        t = self.topic("order")
        s = self.client()
        self.sub(s, [(t, 0)])
        p = self.client()
        p.send(b"".join(publish(t, b"m%03d" % i) for i in range(50)))
        for i in range(50):
            self.expect(s, publish(t, b"m%03d" % i), "message %d" % i)

    def test_dup_with_qos0_closes(self):
        """[MQTT-3.3.1-2] [MQTT-4.8.0-1] (3.1.1): DUP 1 on a QoS 0 PUBLISH is
        a protocol violation: closed (5.0: DISCONNECT 0x81 first)."""
        t = self.topic("dup0")
        for v, allowed in ((V311, {b""}), (V5, {P.disconnect5(0x81)})):
            c = self.client(version=v)
            c.send(publish(t, b"x", version=v, first_byte=0x38))
            self.expect_closed(c, allowed, what="DUP with QoS 0 v%d" % v)

    # ---- topic names ---------------------------------------------------

    def test_wildcard_in_topic_name_closes(self):
        """[MQTT-3.3.2-2]: a topic name with + or # -> closed (5.0: after a
        DISCONNECT with 0x81, 0x82 or 0x90); nothing is delivered."""
        t = self.topic("wild")
        s = self.client()
        self.sub(s, [(self.topic("#"), 0)])
        for name in (t + "/+", t + "/#", t + "/a+b"):
            c = self.client()
            c.send(publish(name, b"x"))
            self.expect_closed(c, {b""}, what="topic %r" % name)
            c = self.client(version=V5)
            c.send(publish(name, b"x", version=V5))
            self.expect_closed(c, {P.disconnect5(r) for r in (0x81, 0x82, 0x90)},
                               what="topic %r v5" % name)
        self.expect_silence(s, 0.3, "nothing delivered")

    def test_empty_topic_name_closes(self):
        """[MQTT-4.7.3-1] (3.1.1 and 5.0): a zero-length topic name (no
        Topic Alias) -> closed (5.0: DISCONNECT 0x82 or 0x81 first)."""
        c = self.client()
        c.send(publish("", b"x"))
        self.expect_closed(c, {b""})
        c = self.client(version=V5)
        c.send(publish("", b"x", version=V5))
        self.expect_closed(c, {P.disconnect5(0x82), P.disconnect5(0x81)})

    def test_topic_levels_not_normalised(self):
        """[MQTT-4.7.3-4] (3.1.1 and 5.0): topics are compared byte for
        byte: case, empty levels and spaces are significant."""
        base = self.topic()
        s = self.client()
        self.sub(s, [(base + "/Accounts", 0)])
        p = self.client()
        for other in ("/accounts", "/ACCOUNTS", "/Accounts/", "//Accounts", "/Accounts "):
            p.send(publish(base + other, b"no"))
        p.send(publish(base + "/Accounts", b"yes"))
        self.expect(s, publish(base + "/Accounts", b"yes"), "the exact topic only")
        self.expect_silence(s, 0.3)

    # ---- topic matching ------------------------------------------------

    def test_multi_level_wildcard(self):
        """[MQTT-4.7.1-2] (3.1.1 and 5.0): "x/#" matches x itself and every
        level below it."""
        base = self.topic("sport")
        s = self.client()
        self.sub(s, [(base + "/#", 0)])
        p = self.client()
        for t in (base, base + "/tennis", base + "/tennis/player1", base + "/"):
            p.send(publish(t, b"m"))
            self.expect(s, publish(t, b"m"), "match of %r" % t)
        p.send(publish(base + "s", b"m"))
        self.expect_silence(s, 0.3, "no match for a longer level")

    def test_single_level_wildcard(self):
        """[MQTT-4.7.1-3] (3.1.1 and 5.0): "+" matches exactly one level,
        including an empty one."""
        base = self.topic("finance")
        s = self.client()
        self.sub(s, [(base + "/+/q", 0)])
        p = self.client()
        for t in (base + "/a/q", base + "//q"):
            p.send(publish(t, b"m"))
            self.expect(s, publish(t, b"m"), "match of %r" % t)
        for t in (base + "/q", base + "/a/b/q", base + "/a/q/r"):
            p.send(publish(t, b"m"))
        self.expect_silence(s, 0.3, "no match for other depths")

    def test_dollar_topics_and_wildcards(self):
        """[MQTT-4.7.2-1]: filters starting with # or + do not match topic
        names beginning with $; "$x/#" does."""
        d = "$conf%s" % self.uid("d")
        s_all = self.client()
        self.sub(s_all, [("#", 0)])
        s_plus = self.client()
        self.sub(s_plus, [("+/x", 0), ("+", 0)])
        s_dollar = self.client()
        self.sub(s_dollar, [(d + "/#", 0)])
        p = self.client()
        p.send(publish(d + "/x", b"dollar"))
        p.send(publish(d, b"dollar2"))
        self.expect(s_dollar, publish(d + "/x", b"dollar"), "$ topic via $x/#")
        self.expect(s_dollar, publish(d, b"dollar2"), "$ topic via $x/#")
        # "#" and "+" may see other tests' traffic; none of it starts with $.
        for c in (s_all, s_plus):
            while True:
                try:
                    m = c.read(0.3)
                except P.Timeout:
                    break
                pub = P.R.parse_publish(m, c.version)
                self.assertFalse(pub["topic"].startswith("$"),
                                 "wildcard matched %r" % pub["topic"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
