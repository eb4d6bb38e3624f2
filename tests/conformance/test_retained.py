"""Conformance: retained messages (set, replace, clear, RETAIN flag on
delivery, Retain As Published and Retain Handling in 5.0, shared
subscriptions)."""

import unittest

import packets as P
from packets import RETAIN_AS_PUBLISHED, V311, V5, publish, puback, rh


class RetainedTest(P.ConfTestCase):

    def retain(self, topic, payload, qos=0, version=V311, properties=None):
        """Publishes a retained message and waits until the server has it
        (QoS 1: its PUBACK; QoS 0: a PINGREQ round trip behind it)."""
        c = self.client(version=version)
        if qos:
            c.send(publish(topic, payload, qos=qos, packet_id=1, retain=True,
                           version=version, properties=properties))
            self.expect_ack(c, P.PUBACK, 1)
        else:
            c.send(publish(topic, payload, retain=True, version=version, properties=properties))
            c.send(P.pingreq())
            self.expect(c, b"\xd0\x00", "PINGRESP")
        c.do_disconnect()

    def test_retained_delivered_on_subscribe(self):
        """[MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] (3.1.1): a retained
        message is stored and sent to a new subscriber with RETAIN 1:
        31 .. topic payload."""
        t = self.topic("r")
        self.retain(t, b"kept")
        for v in (V311, V5):
            s = self.client(version=v)
            self.sub(s, [(t, 0)])
            self.expect(s, publish(t, b"kept", retain=True, version=v), "retained v%d" % v)

    def test_retained_replaced(self):
        """[MQTT-3.3.1-5] [MQTT-3.3.1-7] (3.1.1) / [MQTT-3.3.1-5] (5.0): a new
        retained message replaces the previous one of its topic."""
        t = self.topic("r")
        self.retain(t, b"one")
        self.retain(t, b"two")
        s = self.client()
        self.sub(s, [(t, 0)])
        self.expect(s, publish(t, b"two", retain=True), "the latest only")
        self.expect_silence(s, 0.3)

    def test_retained_cleared_by_empty_payload(self):
        """[MQTT-3.3.1-10] [MQTT-3.3.1-11] (3.1.1) / [MQTT-3.3.1-6]
        [MQTT-3.3.1-7] (5.0): an empty retained message is delivered as
        usual to current subscribers (RETAIN 0), clears the topic's
        retained message and is not stored itself."""
        t = self.topic("r")
        self.retain(t, b"old")
        live = self.client()
        self.sub(live, [(t, 0)])
        self.expect(live, publish(t, b"old", retain=True))
        p = self.client()
        p.send(publish(t, b"", retain=True))
        self.expect(live, publish(t, b""), "empty message to the live subscriber")
        s = self.client()
        self.sub(s, [(t, 0)])
        self.expect_silence(s, 0.4, "no retained message after clearing")

    def test_retain_0_does_not_replace(self):
        """[MQTT-3.3.1-12] (3.1.1) / [MQTT-3.3.1-8] (5.0): a PUBLISH with
        RETAIN 0 neither stores nor replaces the retained message."""
        t = self.topic("r")
        self.retain(t, b"stays")
        p = self.client()
        p.send(publish(t, b"not retained"))
        p.send(publish(t, b"", retain=False))
        s = self.client()
        self.sub(s, [(t, 0)])
        self.expect(s, publish(t, b"stays", retain=True))
        self.expect_silence(s, 0.3)

    def test_live_delivery_retain_flag_311(self):
        """[MQTT-3.3.1-9] (3.1.1): to an established subscription a retained
        PUBLISH goes out with RETAIN 0."""
        t = self.topic("live")
        s = self.client()
        self.sub(s, [(t, 0)])
        p = self.client()
        p.send(publish(t, b"now", retain=True))
        self.expect(s, publish(t, b"now"), "RETAIN 0 on live delivery")
        self.clear(t)

    def clear(self, t):
        p = self.client()
        p.send(publish(t, b"", retain=True))
        p.do_disconnect()

    def test_retain_as_published(self):
        """[MQTT-3.3.1-12] [MQTT-3.3.1-13] (5.0): live delivery carries
        RETAIN 0 unless the subscription has Retain As Published, then the
        flag as published."""
        t = self.topic("rap")
        s0 = self.client(version=V5)
        self.sub(s0, [(t, 0)])
        s1 = self.client(version=V5)
        self.sub(s1, [(t, RETAIN_AS_PUBLISHED)])
        p = self.client(version=V5)
        p.send(publish(t, b"r", retain=True, version=V5))
        self.expect(s0, publish(t, b"r", version=V5), "RAP 0: RETAIN 0")
        self.expect(s1, publish(t, b"r", retain=True, version=V5), "RAP 1: RETAIN 1")
        p.send(publish(t, b"n", version=V5))
        self.expect(s1, publish(t, b"n", version=V5), "RAP 1, not retained: RETAIN 0")
        self.clear(t)

    def test_retain_handling(self):
        """[MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] (5.0): Retain
        Handling 0 sends retained messages at every SUBSCRIBE, 1 only when
        the subscription is new, 2 never."""
        t = self.topic("rh")
        self.retain(t, b"ret", version=V5)
        exp = publish(t, b"ret", retain=True, version=V5)
        c0 = self.client(version=V5)
        self.sub(c0, [(t, rh(0))], packet_id=1)
        self.expect(c0, exp, "RH 0, first SUBSCRIBE")
        self.sub(c0, [(t, rh(0))], packet_id=2)
        self.expect(c0, exp, "RH 0, repeated SUBSCRIBE")
        c1 = self.client(version=V5)
        self.sub(c1, [(t, rh(1))], packet_id=1)
        self.expect(c1, exp, "RH 1, new subscription")
        self.sub(c1, [(t, rh(1))], packet_id=2)
        self.expect_silence(c1, 0.3, "RH 1, existing subscription: nothing")
        c2 = self.client(version=V5)
        self.sub(c2, [(t, rh(2))], packet_id=1)
        self.expect_silence(c2, 0.3, "RH 2: nothing")

    def test_retained_qos_is_minimum(self):
        """[MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0): a retained message
        published at QoS 1 goes to a QoS 0 subscription at QoS 0 and to a
        QoS 1 one at QoS 1 (33 .. packet id), RETAIN 1 both times."""
        t = self.topic("q")
        self.retain(t, b"q1", qos=1)
        s0 = self.client()
        self.sub(s0, [(t, 0)])
        self.expect(s0, publish(t, b"q1", retain=True), "QoS 0 copy")
        s1 = self.client()
        self.sub(s1, [(t, 1)])
        pid = self.expect_publish(s1, t, b"q1", qos=1, retain=True, what="QoS 1 copy")
        s1.send(puback(pid))
        s2 = self.client()
        self.retain(t + "/zero", b"q0", qos=0)
        self.sub(s2, [(t + "/zero", 2)])
        self.expect(s2, publish(t + "/zero", b"q0", retain=True), "QoS 0 retained to QoS 2 sub")

    def test_retained_wildcard_subscription(self):
        """[MQTT-3.3.1-6] (3.1.1): a wildcard subscription receives every
        matching retained message (in any order), each once."""
        base = self.topic("w")
        for i in range(5):
            self.retain(base + "/%d" % i, b"v%d" % i)
        self.retain(base + "/3/deeper", b"deep")
        s = self.client()
        self.sub(s, [(base + "/+", 0)])
        got = set()
        for _ in range(5):
            m = P.R.parse_publish(self.read_packet(s, what="retained"), V311)
            self.assertTrue(m["retain"])
            got.add((m["topic"], m["payload"]))
        self.assertEqual(got, {(base + "/%d" % i, b"v%d" % i) for i in range(5)})
        self.expect_silence(s, 0.3, "not the deeper topic")

    def test_retained_not_sent_to_shared_subscription(self):
        """[MQTT-3.3.1-9] (5.0, read with §4.8.2: retained messages are not sent when a shared
        subscription is made): "$share/g/t" gets nothing at SUBSCRIBE, live
        messages do arrive."""
        t = self.topic("share")
        self.retain(t, b"not for shares", version=V5)
        c = self.client(version=V5)
        self.sub(c, [("$share/g/" + t, 0)])
        self.expect_silence(c, 0.4, "no retained message via $share")
        p = self.client(version=V5)
        p.send(publish(t, b"live", version=V5))
        self.expect(c, publish(t, b"live", version=V5))

    def test_retained_keeps_properties(self):
        """[MQTT-3.3.2-4] [MQTT-3.3.2-20] [MQTT-3.3.2-17] (5.0): a retained
        message keeps its Payload Format Indicator, Content Type and User
        Properties for later subscribers."""
        t = self.topic("props")
        pr = [(P.R.PROP_PAYLOAD_FORMAT, 1), (P.R.PROP_CONTENT_TYPE, "text/plain"),
              (P.R.PROP_USER_PROPERTY, ("k", "v"))]
        self.retain(t, b"with props", version=V5, properties=pr)
        s = self.client(version=V5)
        self.sub(s, [(t, 0)])
        pk = self.read_packet(s, what="retained")
        m = P.R.parse_publish(pk, V5)
        self.assertEqual((m["topic"], m["payload"], m["retain"]), (t, b"with props", True))
        self.assertEqual(P.props_list(pk), [(1, 1), (3, b"text/plain"), (0x26, (b"k", b"v"))])

    def test_retained_and_dollar_topics(self):
        """[MQTT-4.7.2-1]: "#" does not receive retained messages of topics
        beginning with $; "$x/#" does."""
        d = "$conf%s" % self.uid("r")
        self.retain(d + "/a", b"dollar")
        s = self.client()
        self.sub(s, [("#", 0)])
        while True:
            try:
                pk = s.read(0.4)
            except P.Timeout:
                break
            m = P.R.parse_publish(pk, V311)
            self.assertFalse(m["topic"].startswith("$"), "# matched %r" % m["topic"])
        s2 = self.client()
        self.sub(s2, [(d + "/#", 0)])
        self.expect(s2, publish(d + "/a", b"dollar", retain=True))
        self.clear(d + "/a")


if __name__ == "__main__":
    unittest.main(verbosity=2)
