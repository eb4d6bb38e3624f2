"""TLS listeners, mutual TLS, certificate revocation and renewal.

droverd runs with --mqtts-listen and --https-listen on free ports and its
own fleet CA (<data_dir>/ca.crt, ca.key, created at first start). Keys,
CSRs, a second ("wrong") CA and certificates with chosen validity periods
are made with the openssl command line; the clients are curl, openssl
s_client, mosquitto_pub, Eclipse Paho and Python's ssl module under raw
MQTT packets (mqttraw), none of them sharing code with the server.

The helpers at the top (TlsServerTestCase, Pki, TlsMqttClient, TlsConn)
are used by test_provision.py too.
"""

import http.client
import json
import os
import re
import secrets
import select
import ssl
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw  # noqa: E402
from harness import ADMIN, HOST, uid  # noqa: E402

# CONNACK codes (docs/protocol.md, "Refusals")
RC311_ID_REJECTED = 2
RC311_BAD_CREDENTIALS = 4
RC311_NOT_AUTHORIZED = 5
RC5_CLIENT_ID_INVALID = 0x85
RC5_BAD_CREDENTIALS = 0x86
RC5_NOT_AUTHORIZED = 0x87
RC5_PAYLOAD_FORMAT_INVALID = 0x99

CERT_LIFETIME_MS = 7776000 * 1000  # cert_lifetime_s default (docs/config.md)


# ---------------------------------------------------------------- openssl

def openssl(*args, input=None, timeout=30):
    """Runs `openssl args...`; raises with its output unless it exits 0."""
    r = harness.run(["openssl"] + list(args), timeout=timeout, input=input)
    if r.returncode != 0:
        raise AssertionError("openssl %s: exit %d\n%s%s" % (
            " ".join(args), r.returncode, r.stdout, r.stderr))
    return r.stdout


# A minimal configuration for `openssl req` and `openssl ca`, independent of
# the system's openssl.cnf (whose [req] section adds extensions of its own).
OPENSSL_CNF = """
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ ca ]
default_ca = signer
[ signer ]
database = @DB@/index.txt
new_certs_dir = @DB@
serial = @DB@/serial
default_md = sha256
default_days = 30
policy = any_cn
unique_subject = no
copy_extensions = none
x509_extensions = client_ext
[ any_cn ]
commonName = supplied
[ client_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = clientAuth
"""


class Pki:
    """Keys, CSRs and certificates in a scratch directory."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(self.dir, exist_ok=True)
        self.cnf = self.path("openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(OPENSSL_CNF.replace("@DB@", self.dir))
        self.n = 0

    def path(self, name):
        return os.path.join(self.dir, name)

    def fresh(self, stem):
        self.n += 1
        return self.path("%s-%d" % (stem, self.n))

    def key(self):
        """A new EC P-256 private key (PEM file); returns its path."""
        p = self.fresh("key") + ".pem"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", p)
        return p

    def csr(self, key, cn):
        """A PEM CSR with subject CN=cn signed by key."""
        return openssl("req", "-new", "-config", self.cnf, "-key", key, "-subj", "/CN=" + cn)

    def key_csr(self, cn):
        k = self.key()
        return k, self.csr(k, cn)

    def write(self, text, stem="cert"):
        p = self.fresh(stem) + ".pem"
        with open(p, "w") as f:
            f.write(text)
        return p

    def ca(self, name):
        """A self-signed CA of our own (not the fleet's): (cert, key)."""
        key = self.key()
        crt = self.fresh("ca") + ".crt"
        openssl("req", "-x509", "-new", "-config", self.cnf, "-key", key, "-subj",
                "/CN=" + name, "-days", "30", "-extensions", "ca_ext", "-out", crt)
        return crt, key

    def sign(self, csr_pem, ca_crt, ca_key, startdate=None, enddate=None):
        """Signs a client certificate with `openssl ca` (which, unlike
        `openssl x509 -req` in OpenSSL 3.0, takes any validity period).
        Returns the certificate's path."""
        db = self.fresh("cadb")
        os.makedirs(db)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write(secrets.token_hex(16).upper() + "\n")
        csr = os.path.join(db, "req.csr")
        with open(csr, "w") as f:
            f.write(csr_pem)
        out = os.path.join(db, "cert.pem")
        cnf = os.path.join(db, "openssl.cnf")
        with open(cnf, "w") as f:
            f.write(OPENSSL_CNF.replace("@DB@", db))
        args = ["ca", "-batch", "-notext", "-config", cnf, "-cert", ca_crt,
                "-keyfile", ca_key, "-in", csr, "-out", out]
        if startdate:
            args += ["-startdate", startdate]
        if enddate:
            args += ["-enddate", enddate]
        r = harness.run(["openssl"] + args)
        if r.returncode != 0:
            raise AssertionError("openssl ca: %s%s" % (r.stdout, r.stderr))
        return out

    @staticmethod
    def verify(ca_file, cert_file):
        """`openssl verify -CAfile`: (ok, output)."""
        r = harness.run(["openssl", "verify", "-CAfile", ca_file, cert_file])
        return r.returncode == 0 and cert_file + ": OK" in r.stdout, r.stdout + r.stderr

    @staticmethod
    def subject(cert_file):
        s = openssl("x509", "-in", cert_file, "-noout", "-subject", "-nameopt", "RFC2253")
        return s.strip().split("=", 1)[1]

    @staticmethod
    def serial(cert_file):
        """The serial as droverd prints it: upper-case hex in whole bytes
        (OpenSSL's BN_bn2hex), as `openssl x509 -serial` prints it too; a
        serial whose first nibble is 0 keeps its leading zero."""
        s = openssl("x509", "-in", cert_file, "-noout", "-serial").strip()
        return s.split("=", 1)[1].upper()


# ---------------------------------------------------------------- clients

class TlsMqttClient(harness.MqttClient):
    """harness.MqttClient over TLS (paho's tls_set), recording when and
    with which reason the connection first ended."""

    def __init__(self, port, client_id, username=None, password=None, ca=None,
                 cert=None, key=None, **kw):
        super().__init__(port, client_id, username, password, **kw)
        self.c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
        self.first_disconnect_at = None
        self.first_disconnect_rc = None
        self.tls_error = None

    def _on_disconnect(self, client, userdata, rc, properties=None):
        with self.cv:
            if self.first_disconnect_at is None:
                self.first_disconnect_at = time.monotonic()
                self.first_disconnect_rc = harness._rc(rc)
        super()._on_disconnect(client, userdata, rc, properties)

    def connect(self, timeout=5.0):
        """CONNACK code, or -1 when the connection ended without one (a
        failed handshake included; the error is kept in tls_error)."""
        try:
            return super().connect(timeout)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
            self.tls_error = e
            return -1


class TlsConn(mqttraw.Conn):
    """mqttraw.Conn over Python's ssl. The handshake happens in the
    constructor (ssl.SSLError if it fails there, as in TLS 1.2). With TLS
    1.3 a refused client certificate shows at the first read: Closed, whose
    text carries the alert."""

    def __init__(self, port, ca, cert=None, key=None, version=mqttraw.V311,
                 session=None, max_tls=None, timeout=5.0, context=None):
        ctx = context or self.context(ca, cert, key, max_tls)
        raw = socket.create_connection((HOST, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=HOST, session=session)
        except Exception:
            raw.close()
            raise
        self.version = version
        self.buf = bytearray()
        self.stash = []
        self.eof = False

    @staticmethod
    def context(ca, cert=None, key=None, max_tls=None):
        """A client context; resuming a session needs the one it came from."""
        ctx = ssl.create_default_context(cafile=ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        if max_tls:
            ctx.maximum_version = max_tls
        return ctx

    def _fill(self, deadline):
        # select() cannot see bytes ssl has already decrypted, and a
        # readable socket may hold only TLS records that carry no data (TLS
        # 1.3 session tickets): recv() must not block past the deadline.
        if self.eof:
            raise mqttraw.Closed("eof")
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise mqttraw.Timeout("timeout")
            if self.sock.pending() == 0:
                r, _, _ = select.select([self.sock], [], [], left)
                if not r:
                    raise mqttraw.Timeout("timeout")
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError as e:
                self.eof = True
                raise mqttraw.Closed(str(e))
            if not data:
                self.eof = True
                raise mqttraw.Closed("eof")
            self.buf += data
            return


# ---------------------------------------------------------------- base class

class TlsServerTestCase(harness.ServerTestCase):
    """One droverd per class with the TLS listeners on; cls.pki is a
    scratch Pki, cls.ca_file the fleet CA certificate."""

    @classmethod
    def setUpClass(cls):
        harness.require_tool("openssl")
        for attempt in range(3):
            mqtt, http_, mqtts, https = harness.free_ports(4)
            args = ["--mqtts-listen", "%s:%d" % (HOST, mqtts),
                    "--https-listen", "%s:%d" % (HOST, https)] + list(cls.server_args)
            srv = harness.Droverd(config=cls.server_config, extra_args=args,
                                  mqtt_port=mqtt, http_port=http_)
            try:
                srv.start()
            except AssertionError:
                clash = srv.stderr_path and "in use" in srv.stderr().lower()
                srv.cleanup()
                if clash and attempt < 2:
                    continue
                raise
            break
        cls.server = srv
        cls.mqtts_port, cls.https_port = mqtts, https
        cls.ca_file = os.path.join(srv.data_dir, "ca.crt")
        cls.pki = Pki(os.path.join(srv.tmp, "pki"))

    # -- REST -------------------------------------------------------------

    def https(self, method, path, body=None, token=ADMIN, headers=None):
        """Like Droverd.api() over the HTTPS listener, verifying the server
        against the fleet CA and the name 127.0.0.1."""
        h = {}
        if token is ADMIN:
            token = self.server.token
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
            if isinstance(data, str):
                data = data.encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        ctx = ssl.create_default_context(cafile=self.ca_file)
        conn = http.client.HTTPSConnection(HOST, self.https_port, context=ctx, timeout=10)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            payload = r.read()
        finally:
            conn.close()
        if not payload:
            return r.status, None
        try:
            return r.status, json.loads(payload)
        except ValueError:
            return r.status, payload.decode("utf-8", "replace")

    def issue(self, device_id, cn=None):
        """A key and a certificate for device_id from the API: (key path,
        cert path, answer)."""
        key, csr = self.pki.key_csr(cn or device_id)
        st, js = self.server.api("POST", "/api/v1/devices/%s/certificates" % device_id,
                                 {"csr": csr})
        self.assertEqual(st, 201, js)
        return key, self.pki.write(js["certificate"]), js

    # -- MQTT -------------------------------------------------------------

    def tls_client(self, client_id, username=None, password=None, cert=None, key=None,
                   **kw):
        c = TlsMqttClient(self.mqtts_port, client_id, username, password,
                          ca=self.ca_file, cert=cert, key=key, **kw)
        self.addCleanup(c.close)
        return c

    def tls_connack(self, client_id, cert=None, key=None, username=None, password=None,
                    version=4):
        """The CONNACK code of one TLS connect (-1: none), then closes."""
        c = self.tls_client(client_id, username, password, cert, key, version=version)
        rc = c.connect()
        if rc != 0:
            c.wait_disconnected(3)
        else:
            c.disconnect()
        c.close()
        return rc

    def raw_tls(self, cert=None, key=None, version=mqttraw.V311, **kw):
        c = TlsConn(self.mqtts_port, self.ca_file, cert, key, version=version, **kw)
        self.addCleanup(c.close)
        return c

    def handshake_verdict(self, cert, key):
        """None when the server accepts the client certificate (it then
        waits for CONNECT: nothing arrives within a second), else the error
        text, which names the TLS alert the server sent."""
        try:
            c = TlsConn(self.mqtts_port, self.ca_file, cert, key)
        except (ssl.SSLError, OSError) as e:
            return "handshake: %s" % e
        try:
            p = c.read(timeout=1.0)
            return "unexpected packet %r" % p
        except mqttraw.Timeout:
            return None
        except mqttraw.Closed as e:
            return "closed: %s" % e
        finally:
            c.close()

    def mosquitto_pub(self, device_id, payload, cert=None, key=None, username=None,
                      password=None, proto="mqttv311"):
        harness.require_tool("mosquitto_pub")
        args = ["mosquitto_pub", "-h", HOST, "-p", str(self.mqtts_port), "--cafile",
                self.ca_file, "-V", proto, "-i", device_id, "-q", "1",
                "-t", "devices/%s/telemetry" % device_id, "-m", json.dumps(payload)]
        if cert:
            args += ["--cert", cert, "--key", key]
        if username is not None:
            args += ["-u", username]
        if password is not None:
            args += ["-P", password]
        return harness.run(args, timeout=20)

    def points(self, device_id):
        return self.server.telemetry(device_id)["points"]

    def metrics(self):
        """Every unlabelled metric of one /metrics answer: {name: value}."""
        st, _, body = self.server.request("GET", "/metrics", token=None)
        self.assertEqual(st, 200)
        return {m.group(1): int(m.group(2))
                for m in re.finditer(r"^([a-z_]+) (\d+)$", body.decode(), re.M)}

    def metric(self, name):
        v = self.metrics().get(name)
        self.assertIsNotNone(v, "metric %s missing" % name)
        return v

    def offline_sessions(self):
        """Persistent sessions kept for clients that are not connected."""
        m = self.metrics()
        return m["drover_mqtt_sessions"] - m["drover_mqtt_connections"]

    def s_client(self, port, args, hold=0.6):
        """openssl s_client against port, stdin held open for `hold` seconds
        (so a TLS 1.3 ticket, sent after the handshake, is read), then
        closed. Returns (exit code, stdout + stderr)."""
        p = subprocess.Popen(["openssl", "s_client", "-connect", "%s:%d" % (HOST, port),
                              "-CAfile", self.ca_file] + list(args),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(hold)
            try:
                p.stdin.close()
            except OSError:
                pass
            p.stdin = None  # communicate() must not touch it again
            out, _ = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            raise AssertionError("openssl s_client %s hung:\n%s" % (" ".join(args), out))
        return p.returncode, out


# ================================================================ the tests

class HttpsTest(TlsServerTestCase):

    def curl(self, url, *extra):
        harness.require_tool("curl")
        return harness.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}",
                            "-H", "Authorization: Bearer " + self.server.token] +
                           list(extra) + [url], timeout=20)

    def test_https_api_with_fleet_ca(self):
        base = "https://127.0.0.1:%d" % self.https_port
        r = self.curl(base + "/api/v1/devices", "--cacert", self.ca_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        body, code = r.stdout.rsplit("\n", 1)
        self.assertEqual(code, "200", r.stdout)
        self.assertIn("devices", json.loads(body))
        # The certificate names localhost too.
        r = self.curl("https://localhost:%d/healthz" % self.https_port, "--cacert",
                      self.ca_file, "--resolve", "localhost:%d:127.0.0.1" % self.https_port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.endswith("\n200"), r.stdout)
        # ... and no other name; and only the fleet CA vouches for it.
        r = self.curl("https://drover.invalid:%d/healthz" % self.https_port, "--cacert",
                      self.ca_file, "--resolve",
                      "drover.invalid:%d:127.0.0.1" % self.https_port)
        self.assertEqual(r.returncode, 60, "wrong name accepted: %s %s" % (r.stdout, r.stderr))
        r = self.curl(base + "/healthz")
        self.assertEqual(r.returncode, 60, "verified without the fleet CA: %s" % r.stderr)
        san = openssl("x509", "-in", os.path.join(self.server.data_dir, "server.crt"),
                      "-noout", "-ext", "subjectAltName")
        for name in ("DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"):
            self.assertIn(name, san)
        # Writes over HTTPS, and the CA certificate is public.
        d = uid("https")
        st, js = self.https("POST", "/api/v1/devices", {"id": d})
        self.assertEqual(st, 201, js)
        self.assertEqual(len(js["secret"]), 43)
        st, js = self.https("GET", "/api/v1/ca", token=None)
        self.assertEqual(st, 200, js)
        with open(self.ca_file) as f:
            self.assertEqual(js["certificate"].strip(), f.read().strip())
        st, _ = self.https("GET", "/api/v1/devices/" + d, token=None)
        self.assertEqual(st, 401)

    def test_plain_http_still_served(self):
        st, js = self.server.api("GET", "/healthz", token=None)
        self.assertEqual((st, js), (200, {"status": "ok"}))
        d, _ = self.new_device("plain")
        self.assertEqual(self.server.device(d)["id"], d)
        # The two listeners do not answer each other's protocol.
        r = harness.run(["curl", "-sS", "http://127.0.0.1:%d/healthz" % self.https_port],
                        timeout=20)
        self.assertNotEqual(r.returncode, 0, "plain HTTP answered on the HTTPS port")
        r = harness.run(["curl", "-sS", "--cacert", self.ca_file,
                         "https://127.0.0.1:%d/healthz" % self.server.http_port], timeout=20)
        self.assertNotEqual(r.returncode, 0, "TLS answered on the plain HTTP port")

    def test_tls_versions_and_ciphers(self):
        for port in (self.https_port, self.mqtts_port):
            # SECLEVEL=0 so that our own client does offer TLS 1.1: the
            # refusal must come from the server (alert 70, protocol version).
            rc, out = self.s_client(port, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
                                    hold=0.2)
            self.assertNotEqual(rc, 0, "TLS 1.1 accepted on %d:\n%s" % (port, out))
            self.assertIn("alert protocol version", out)
            for flag, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
                rc, out = self.s_client(port, [flag], hold=0.2)
                self.assertIn("Protocol  : %s" % name, out, out)
                self.assertIn("Verify return code: 0 (ok)", out, out)
            # TLS 1.2: ECDHE with AEAD only; CBC is refused.
            rc, out = self.s_client(port, ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
                                    hold=0.2)
            self.assertNotEqual(rc, 0, "a CBC suite was accepted on %d:\n%s" % (port, out))
            self.assertIn("alert handshake failure", out)
            rc, out = self.s_client(port, ["-tls1_2", "-cipher",
                                           "ECDHE-ECDSA-AES128-GCM-SHA256"], hold=0.2)
            self.assertIn("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256", out, out)

    def test_session_resumption(self):
        for port in (self.mqtts_port, self.https_port):
            for flag, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
                sess = self.pki.fresh("session") + ".pem"
                rc, out = self.s_client(port, [flag, "-sess_out", sess])
                self.assertIn("New, %s" % name, out, out)
                self.assertTrue(os.path.exists(sess) and os.path.getsize(sess) > 0,
                                "no session written (%s on %d):\n%s" % (name, port, out))
                rc, out = self.s_client(port, [flag, "-sess_in", sess])
                self.assertIn("Reused, %s" % name, out,
                              "%s session not resumed on %d:\n%s" % (name, port, out))


class MqttTlsPasswordTest(TlsServerTestCase):

    def test_mosquitto_pub_over_tls(self):
        for i, proto in enumerate(("mqttv311", "mqttv5")):
            d, secret = self.new_device("tlspw")
            r = self.mosquitto_pub(d, {"temp": 20 + i}, username=d, password=secret,
                                   proto=proto)
            self.assertEqual(r.returncode, 0, "%s: %s %s" % (proto, r.stdout, r.stderr))
            self.assertEqual(self.server.device(d)["telemetry"]["temp"]["value"], 20 + i)
            r = self.mosquitto_pub(d, {"temp": 0}, username=d, password=secret + "x",
                                   proto=proto)
            self.assertNotEqual(r.returncode, 0, "%s: wrong secret accepted" % proto)
            self.assertEqual(len(self.points(d)), 1)

    def test_paho_over_tls(self):
        for version, bad in ((4, RC311_BAD_CREDENTIALS), (5, RC5_BAD_CREDENTIALS)):
            d, secret = self.new_device("tlspaho")
            c = self.tls_client(d, d, secret, version=version)
            self.assertEqual(c.connect(), 0)
            self.assertTrue(c.publish("devices/%s/telemetry" % d, {"v": version}))
            c.disconnect()
            self.assertEqual(self.server.device(d)["telemetry"]["v"]["value"], version)
            self.assertEqual(self.tls_connack(d, username=d, password="x" * 43,
                                              version=version), bad)
            # No certificate and no password: refused like on the plain port.
            self.assertEqual(self.tls_connack(d, username=d, version=version), bad)


class MutualTlsTest(TlsServerTestCase):

    def test_certificate_from_the_api(self):
        d, _ = self.new_device("mtls")
        key, crt, js = self.issue(d)
        for k in ("serial", "device", "not_before", "not_after", "created_at",
                  "certificate", "ca_certificate"):
            self.assertIn(k, js)
        self.assertEqual(js["device"], d)
        self.assertIsNone(js["revoked_at"])
        ok, out = Pki.verify(self.ca_file, crt)
        self.assertTrue(ok, out)
        self.assertEqual(Pki.subject(crt), "CN=" + d)
        self.assertEqual(Pki.serial(crt), js["serial"])
        self.assertIn("TLS Web Client Authentication",
                      openssl("x509", "-in", crt, "-noout", "-ext", "extendedKeyUsage"))
        now = harness.now_ms()
        self.assertLess(abs(js["not_after"] - (now + CERT_LIFETIME_MS)), 3600 * 1000)
        self.assertLessEqual(js["not_before"], now)
        with open(self.ca_file) as f:
            self.assertEqual(js["ca_certificate"].strip(), f.read().strip())
        st, lst = self.server.api("GET", "/api/v1/devices/%s/certificates" % d)
        self.assertEqual(st, 200, lst)
        self.assertEqual([c["serial"] for c in lst["certificates"]], [js["serial"]])
        self.assertNotIn("BEGIN PRIVATE KEY", json.dumps(lst))
        # Refusals: another CN, not a CSR, no such device.
        _, other = self.pki.key_csr(d + "-other")
        st, e = self.server.api("POST", "/api/v1/devices/%s/certificates" % d, {"csr": other})
        self.assertError(st, e, 400, "bad_request")
        st, e = self.server.api("POST", "/api/v1/devices/%s/certificates" % d,
                                {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                        "-----END CERTIFICATE REQUEST-----\n"})
        self.assertError(st, e, 400, "bad_request")
        st, e = self.server.api("POST", "/api/v1/devices/%s/certificates" % uid("nobody"),
                                {"csr": self.pki.csr(key, "x")})
        self.assertError(st, e, 404, "not_found")

    def test_mosquitto_pub_with_certificate(self):
        d, _ = self.new_device("mtlsmp")
        key, crt, _ = self.issue(d)
        for i, proto in enumerate(("mqttv311", "mqttv5")):
            r = self.mosquitto_pub(d, {"n": i}, cert=crt, key=key, proto=proto)
            self.assertEqual(r.returncode, 0, "%s: %s %s" % (proto, r.stdout, r.stderr))
        self.assertEqual(sorted(p["value"] for p in self.points(d)), [0, 1])

    def test_paho_with_certificate(self):
        d, _ = self.new_device("mtlspaho")
        key, crt, _ = self.issue(d)
        for version in (4, 5):
            c = self.tls_client(d, cert=crt, key=key, version=version)
            self.assertEqual(c.connect(), 0, "v%d: no password needed" % version)
            self.assertTrue(c.publish("devices/%s/telemetry" % d, {"v": version}))
            # The device's ACL applies as with a password.
            self.assertEqual(c.subscribe("devices/other/#"),
                             [0x80 if version == 4 else RC5_NOT_AUTHORIZED])
            c.disconnect()
            # A username, if sent, must be the CN; the password is not needed.
            self.assertEqual(self.tls_connack(d, crt, key, username=d, version=version), 0)
        self.assertEqual(sorted(p["value"] for p in self.points(d)), [4, 5])
        st, dev = self.server.api("GET", "/api/v1/devices/" + d)
        self.assertFalse(dev["online"])

    def test_client_id_must_be_the_cn(self):
        d, _ = self.new_device("mtlscn")
        victim, _ = self.new_device("victim")
        key, crt, _ = self.issue(d)
        for version, want in ((4, RC311_ID_REJECTED), (5, RC5_CLIENT_ID_INVALID)):
            self.assertEqual(self.tls_connack(d + "x", crt, key, version=version), want)
            # Not even another registered device's id...
            self.assertEqual(self.tls_connack(victim, crt, key, version=version), want)
            # ... nor a username other than the CN.
            self.assertEqual(self.tls_connack(d, crt, key, username=victim, version=version),
                             want)
            self.assertEqual(self.tls_connack(d, crt, key, username=victim, password="p",
                                              version=version), want)
        self.assertEqual(self.points(victim), [])

    def test_certificate_from_another_ca(self):
        d, secret = self.new_device("wrongca")
        ca_crt, ca_key = self.pki.ca("Not the fleet CA")
        key, csr = self.pki.key_csr(d)
        crt = self.pki.sign(csr, ca_crt, ca_key)
        self.assertTrue(Pki.verify(ca_crt, crt)[0])
        before = self.metric("drover_mqtt_tls_handshake_failures_total")
        v = self.handshake_verdict(crt, key)
        self.assertIsNotNone(v, "a certificate from another CA was accepted")
        self.assertIn("unknown ca", v.lower())
        r = self.mosquitto_pub(d, {"x": 1}, cert=crt, key=key)
        self.assertNotEqual(r.returncode, 0, "mosquitto_pub: %s" % r.stdout)
        self.assertNotEqual(self.tls_connack(d, crt, key, version=5), 0)
        self.assertEqual(self.points(d), [])
        harness.wait_for(lambda: self.metric("drover_mqtt_tls_handshake_failures_total")
                         >= before + 3, timeout=3, msg="handshake failures counted")
        # The handshake failure closes that connection only.
        self.assertEqual(self.tls_connack(d, username=d, password=secret), 0)

    def test_expired_and_not_yet_valid_certificates(self):
        d, _ = self.new_device("expired")
        ca_key = os.path.join(self.server.data_dir, "ca.key")
        key, csr = self.pki.key_csr(d)
        expired = self.pki.sign(csr, self.ca_file, ca_key, "20200101000000Z",
                                "20200102000000Z")
        ok, out = Pki.verify(self.ca_file, expired)
        self.assertFalse(ok)
        self.assertIn("expired", out)
        v = self.handshake_verdict(expired, key)
        self.assertIsNotNone(v, "an expired certificate was accepted")
        self.assertIn("certificate expired", v.lower())
        r = self.mosquitto_pub(d, {"x": 1}, cert=expired, key=key)
        self.assertNotEqual(r.returncode, 0, "mosquitto_pub: %s" % r.stdout)
        self.assertNotEqual(self.tls_connack(d, expired, key, version=5), 0)
        future = self.pki.sign(csr, self.ca_file, ca_key, "20900101000000Z",
                               "20900102000000Z")
        v = self.handshake_verdict(future, key)
        self.assertIsNotNone(v, "a not yet valid certificate was accepted")
        self.assertEqual(self.points(d), [])
        # The same key with a current certificate from the same CA works.
        good = self.pki.sign(csr, self.ca_file, ca_key)
        self.assertIsNone(self.handshake_verdict(good, key))
        self.assertEqual(self.tls_connack(d, good, key, version=5), 0)

    def test_server_certificate_is_no_device_credential(self):
        # Signed by the fleet CA, CN=localhost, but for serverAuth only.
        self.server.create_device("localhost")
        crt = os.path.join(self.server.data_dir, "server.crt")
        key = os.path.join(self.server.data_dir, "server.key")
        v = self.handshake_verdict(crt, key)
        self.assertIsNotNone(v, "a serverAuth-only certificate authenticated a client")

    def test_certificate_of_a_deleted_device(self):
        d, _ = self.new_device("deleted")
        key, crt, _ = self.issue(d)
        self.assertEqual(self.tls_connack(d, crt, key, version=5), 0)
        st, _ = self.server.api("DELETE", "/api/v1/devices/" + d)
        self.assertIn(st, (200, 204))
        self.assertEqual(self.tls_connack(d, crt, key, version=5), RC5_NOT_AUTHORIZED)
        self.assertEqual(self.tls_connack(d, crt, key, version=4), RC311_NOT_AUTHORIZED)

    def test_resumed_session_keeps_the_certificate_identity(self):
        d, _ = self.new_device("resume")
        key, crt, js = self.issue(d)
        for max_tls in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = TlsConn.context(self.ca_file, crt, key, max_tls)
            c = self.raw_tls(version=mqttraw.V5, context=ctx)
            self.assertEqual(c.do_connect(d)[1], 0)
            sess = c.sock.session  # TLS 1.3: its ticket came before the CONNACK
            c.do_disconnect()
            self.assertIsNotNone(sess)
            # Resumed (no Certificate message): the identity is the session's.
            r = self.raw_tls(version=mqttraw.V5, session=sess, context=ctx)
            self.assertTrue(r.sock.session_reused, "%s session not resumed" % max_tls)
            self.assertEqual(r.do_connect(d)[1], 0, "resumed session lost the identity")
            r.do_disconnect()
            r = self.raw_tls(version=mqttraw.V5, session=sess, context=ctx)
            self.assertTrue(r.sock.session_reused)
            self.assertEqual(r.do_connect(d + "x")[1], RC5_CLIENT_ID_INVALID)
        # A revoked certificate is refused on a resumed session too.
        st, out = self.server.api("POST", "/api/v1/certificates/%s/revoke" % js["serial"])
        self.assertEqual(st, 200, out)
        r = self.raw_tls(version=mqttraw.V5, session=sess, context=ctx)
        self.assertTrue(r.sock.session_reused)
        self.assertEqual(r.do_connect(d)[1], RC5_NOT_AUTHORIZED)
        # A session resumed from a password connection carries no identity.
        e, esecret = self.new_device("resume-pw")
        ctx = TlsConn.context(self.ca_file)
        c = self.raw_tls(version=mqttraw.V5, context=ctx)
        self.assertEqual(c.do_connect(e, e, esecret)[1], 0)
        sess = c.sock.session
        c.do_disconnect()
        r = self.raw_tls(version=mqttraw.V5, session=sess, context=ctx)
        self.assertTrue(r.sock.session_reused)
        self.assertEqual(r.do_connect(e)[1], RC5_BAD_CREDENTIALS)


class RevocationTest(TlsServerTestCase):

    def read_disconnect(self, conn, t0):
        """The DISCONNECT the server sends a revoked session (within 1 s of
        t0) followed by the close; returns its reason."""
        p = conn.read(timeout=3)
        took = time.monotonic() - t0
        reason = mqttraw.parse_disconnect(p, mqttraw.V5)
        self.assertLess(took, 1.0, "DISCONNECT after %.2fs" % took)
        closed, _ = conn.wait_closed(2)
        self.assertTrue(closed, "connection left open after DISCONNECT")
        return reason

    def test_revoked_certificate_drops_its_session(self):
        d, _ = self.new_device("revcert")
        key_a, crt_a, a = self.issue(d)
        key_b, crt_b, b = self.issue(d)
        _, _, c3 = self.issue(d)  # never used: its revocation must not matter
        c = self.tls_client(d, cert=crt_a, key=key_a, version=5)
        self.assertEqual(c.connect(), 0)
        self.assertEqual(c.subscribe("devices/%s/commands/+" % d), [1])
        t0 = time.monotonic()
        st, js = self.server.api("POST", "/api/v1/certificates/%s/revoke" % a["serial"])
        self.assertEqual(st, 200, js)
        self.assertEqual(js, {"serial": a["serial"], "revoked": True})
        self.assertTrue(c.wait_disconnected(3), "session with the revoked certificate kept")
        self.assertLess(c.first_disconnect_at - t0, 1.0, "dropped after more than 1 s")
        # (Paho 1.6 drops a DISCONNECT reason sent without properties, so
        # the reason is read from raw packets below.)
        self.assertEqual(self.tls_connack(d, crt_a, key_a, version=5), RC5_NOT_AUTHORIZED)
        self.assertEqual(self.tls_connack(d, crt_a, key_a, version=4), RC311_NOT_AUTHORIZED)
        r = self.mosquitto_pub(d, {"x": 1}, cert=crt_a, key=key_a)
        self.assertNotEqual(r.returncode, 0)
        # The device's other certificate still works, and revoking one it
        # is not using leaves its session alone.
        c2 = self.tls_client(d, cert=crt_b, key=key_b, version=5)
        self.assertEqual(c2.connect(), 0)
        st, js = self.server.api("POST", "/api/v1/certificates/%s/revoke" % c3["serial"])
        self.assertEqual(st, 200, js)
        self.assertFalse(c2.wait_disconnected(1.0), "a session on another certificate dropped")
        self.assertTrue(c2.publish("devices/%s/telemetry" % d, {"ok": 1}))
        c2.disconnect()
        # An MQTT 5 session learns why: DISCONNECT 0x87.
        key_d, crt_d, d4 = self.issue(d)
        raw = self.raw_tls(crt_d, key_d, version=mqttraw.V5)
        self.assertEqual(raw.do_connect(d)[1], 0)
        t0 = time.monotonic()
        st, js = self.server.api("POST", "/api/v1/certificates/%s/revoke" % d4["serial"])
        self.assertEqual(st, 200, js)
        self.assertEqual(self.read_disconnect(raw, t0), RC5_NOT_AUTHORIZED)
        st, lst = self.server.api("GET", "/api/v1/devices/%s/certificates" % d)
        revoked = {x["serial"]: x["revoked_at"] for x in lst["certificates"]}
        self.assertIsNotNone(revoked[a["serial"]])
        self.assertIsNotNone(revoked[c3["serial"]])
        self.assertIsNone(revoked[b["serial"]])
        st, e = self.server.api("POST", "/api/v1/certificates/%s/revoke" % ("AB" * 16))
        self.assertError(st, e, 404, "not_found")

    def test_revoked_device_loses_every_credential(self):
        d, secret = self.new_device("revdev")
        key, crt, _ = self.issue(d)
        app = self.app_client(uid("app"), version=5)
        app.connect_ok()
        self.assertTrue(app.publish("devices/%s/status" % d, "kept", retain=True))
        watcher = self.app_client(uid("watch"), version=5)
        watcher.connect_ok()
        watcher.subscribe("devices/%s/#" % d)
        m = watcher.wait_message("devices/%s/status" % d, timeout=3)
        self.assertIsNotNone(m, "precondition: the retained message is there")
        self.assertTrue(m.retain)
        watcher.disconnect()

        # The device holds a persistent session (expiry 1 h) with a
        # subscription: revocation ends it with the connection.
        offline = self.offline_sessions()
        dev = self.raw_tls(version=mqttraw.V5)
        self.assertEqual(dev.do_connect(d, d, secret, clean=False, properties=[
            (mqttraw.PROP_SESSION_EXPIRY, 3600)])[1], 0)
        self.assertEqual(dev.do_subscribe([("devices/%s/commands/+" % d, 1)]), [1])
        t0 = time.monotonic()
        st, js = self.server.api("POST", "/api/v1/devices/%s/revoke" % d)
        self.assertEqual(st, 200, js)
        self.assertEqual((js["id"], js["revoked"]), (d, True))
        self.assertEqual(self.read_disconnect(dev, t0), RC5_NOT_AUTHORIZED)
        harness.wait_for(lambda: self.offline_sessions() == offline, timeout=2,
                         msg="the revoked device's persistent session to be discarded")
        # Messages for it go nowhere (nothing queues them); what it left
        # behind is gone.
        self.assertTrue(app.publish("devices/%s/commands/late" % d, "{}"))
        self.assertEqual(self.offline_sessions(), offline)
        w2 = self.app_client(uid("watch"), version=5)
        w2.connect_ok()
        w2.subscribe("devices/%s/#" % d)
        self.assertIsNone(w2.wait_message(timeout=1.0), "retained message survived")

        # Every credential is refused (docs/protocol.md: "revoked device"
        # is 0x87 / 5): the secret, the certificate, and a rotated secret.
        st, js = self.server.api("POST", "/api/v1/devices/%s/secret" % d)
        self.assertIn(st, (200, 403, 409), js)
        attempts = [("secret v5", dict(username=d, password=secret, version=5)),
                    ("secret v3.1.1", dict(username=d, password=secret, version=4)),
                    ("certificate v5", dict(cert=crt, key=key, version=5)),
                    ("certificate v3.1.1", dict(cert=crt, key=key, version=4))]
        if st == 200:
            attempts += [("rotated secret v5", dict(username=d, password=js["secret"],
                                                    version=5)),
                         ("rotated secret v3.1.1", dict(username=d, password=js["secret"],
                                                        version=4))]
        for what, kw in attempts:
            want = RC5_NOT_AUTHORIZED if kw["version"] == 5 else RC311_NOT_AUTHORIZED
            with self.subTest(credential=what):
                rc = self.tls_connack(d, **kw)
                self.assertNotEqual(rc, 0, "%s of a revoked device accepted" % what)
                self.assertEqual(rc, want, "%s of a revoked device: CONNACK %d, documented %d"
                                 % (what, rc, want))
        if st == 200:
            c = self.device_client(d, js["secret"], version=5)  # the plain listener
            self.assertNotEqual(c.connect(), 0, "a rotated secret revived a revoked device")
        _, csr = self.pki.key_csr(d)
        st, e = self.server.api("POST", "/api/v1/devices/%s/certificates" % d, {"csr": csr})
        self.assertError(st, e, 409, "conflict")
        st, lst = self.server.api("GET", "/api/v1/devices/%s/certificates" % d)
        self.assertTrue(all(x["revoked_at"] for x in lst["certificates"]), lst)
        st, e = self.server.api("POST", "/api/v1/devices/%s/revoke" % uid("nobody"))
        self.assertError(st, e, 404, "not_found")


class RenewalTest(TlsServerTestCase):

    def test_renew_over_mqtt(self):
        d, _ = self.new_device("renew")
        key1, crt1, first = self.issue(d)
        c = self.tls_client(d, cert=crt1, key=key1, version=5)
        self.assertEqual(c.connect(), 0)
        self.assertEqual(c.subscribe("devices/%s/certificates/issued" % d), [1])
        key2, csr2 = self.pki.key_csr(d)
        t = harness.now_ms()
        self.assertTrue(c.publish("devices/%s/certificates/renew" % d, {"csr": csr2}),
                        "PUBACK for the renewal")
        m = c.wait_message("devices/%s/certificates/issued" % d, timeout=5)
        self.assertIsNotNone(m, "no certificate on certificates/issued")
        self.assertEqual(m.qos, 1)
        js = json.loads(m.payload)
        self.assertEqual(set(js), {"serial", "certificate", "ca_certificate", "not_after"})
        crt2 = self.pki.write(js["certificate"])
        ok, out = Pki.verify(self.ca_file, crt2)
        self.assertTrue(ok, out)
        self.assertEqual(Pki.subject(crt2), "CN=" + d)
        self.assertEqual(Pki.serial(crt2), js["serial"])
        self.assertNotEqual(js["serial"], first["serial"])
        with open(self.ca_file) as f:
            self.assertEqual(js["ca_certificate"].strip(), f.read().strip())
        self.assertLess(abs(js["not_after"] - (t + CERT_LIFETIME_MS)), 3600 * 1000)
        # Matches the new key, not the old one.
        self.assertEqual(openssl("x509", "-in", crt2, "-pubkey", "-noout"),
                         openssl("pkey", "-in", key2, "-pubout"))
        c.disconnect()
        self.assertEqual(self.tls_connack(d, crt2, key2, version=5), 0)
        self.assertEqual(self.tls_connack(d, crt1, key1, version=4), 0,
                         "the old certificate stays valid until it expires or is revoked")
        st, lst = self.server.api("GET", "/api/v1/devices/%s/certificates" % d)
        self.assertEqual(sorted(x["serial"] for x in lst["certificates"]),
                         sorted([first["serial"], js["serial"]]))

    def test_bad_renewals(self):
        d, secret = self.new_device("renewbad")
        other, _ = self.new_device("renewother")
        key, crt, _ = self.issue(d)
        c = self.raw_tls(crt, key, version=mqttraw.V5)
        self.assertEqual(c.do_connect(d)[1], 0)
        topic = "devices/%s/certificates/renew" % d
        _, foreign = self.pki.key_csr(other)
        for pid, payload in enumerate([b"not json", b'{"nocsr": 1}', b'{"csr": "garbage"}',
                                       json.dumps({"csr": foreign}).encode()], start=1):
            self.assertEqual(c.do_publish_qos1(topic, payload, packet_id=pid),
                             RC5_PAYLOAD_FORMAT_INVALID, payload[:40])
        self.assertTrue(c.is_open(), "a bad renewal closed the connection")
        st, lst = self.server.api("GET", "/api/v1/devices/%s/certificates" % other)
        self.assertEqual(lst["certificates"], [])
        st, lst = self.server.api("GET", "/api/v1/devices/%s/certificates" % d)
        self.assertEqual(len(lst["certificates"]), 1)
        # A device that authenticated with its secret renews (gets a
        # certificate) the same way.
        c.do_disconnect()
        p = self.raw_tls(version=mqttraw.V5)
        self.assertEqual(p.do_connect(d, d, secret)[1], 0)
        _, csr = self.pki.key_csr(d)
        self.assertEqual(p.do_publish_qos1(topic, json.dumps({"csr": csr}).encode()), 0)
        harness.wait_for(lambda: len(self.server.api(
            "GET", "/api/v1/devices/%s/certificates" % d)[1]["certificates"]) == 2,
            timeout=3, msg="second certificate stored")


if __name__ == "__main__":
    harness.main()
