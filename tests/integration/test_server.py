"""droverd start-up and shutdown: the admin token, refusing to start, the
config file, signals."""

import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Droverd, HOST  # noqa: E402

TOKEN_LINE = re.compile(r"admin token: (drv_\S+)")


class ServerTest(unittest.TestCase):

    def server(self, **kw):
        s = Droverd(**kw)
        self.addCleanup(s.cleanup)
        return s

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="drover-it-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_admin_token_printed_once_mode_0600(self):
        s = self.server()
        s.start()
        out = s.stdout()
        tokens = TOKEN_LINE.findall(out)
        self.assertEqual(len(tokens), 1, "want one 'admin token: drv_...' line:\n" + out)
        self.assertEqual(tokens[0], s.token, "printed token != admin.token")
        self.assertRegex(s.token, r"^drv_[A-Za-z0-9_-]{20,}$")
        path = os.path.join(s.data_dir, "admin.token")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        self.assertEqual(mode, 0o600, "admin.token mode %o" % mode)
        self.assertNotIn(s.token, s.stderr(), "the token leaked into the log")
        self.assertIn("mqtt: listening on %s:%d" % (HOST, s.mqtt_port), out)
        self.assertIn("http: listening on http://%s:%d" % (HOST, s.http_port), out)
        st, _ = s.api("GET", "/api/v1/devices")
        self.assertEqual(st, 200)
        st, _ = s.api("GET", "/api/v1/devices", token="drv_" + "x" * 43)
        self.assertEqual(st, 401)

        s.restart()
        out2 = s.stdout()
        self.assertNotIn("admin token:", out2, "second start printed a token")
        self.assertNotIn(tokens[0], out2)
        with open(path) as f:
            self.assertEqual(f.read().strip(), tokens[0], "admin.token changed")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        st, _ = s.api("GET", "/api/v1/devices")
        self.assertEqual(st, 200, "the first token must still work")
        s.stop()

    def _refuses(self, s, must_mention):
        rc, out, err = s.run_to_exit()
        self.assertEqual(rc, 1, "exit code %s, want 1\nstdout:\n%s\nstderr:\n%s" % (rc, out, err))
        self.assertNotIn("droverd ready", out)
        self.assertEqual(harness.sanitizer_lines(err), [], err)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertTrue(lines, "no reason on stderr")
        hit = [l for l in lines if any(m.lower() in l.lower() for m in must_mention)]
        self.assertTrue(hit, "no stderr line mentions any of %r:\n%s" % (must_mention, err))
        return err

    def test_refuses_taken_mqtt_port(self):
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((HOST, 0))
        blocker.listen(1)
        self.addCleanup(blocker.close)
        port = blocker.getsockname()[1]
        s = self.server(mqtt_port=port, http_port=harness.free_port(), log_level=None)
        self._refuses(s, [str(port), "in use"])

    def test_refuses_taken_http_port(self):
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((HOST, 0))
        blocker.listen(1)
        self.addCleanup(blocker.close)
        port = blocker.getsockname()[1]
        s = self.server(http_port=port, mqtt_port=harness.free_port(), log_level=None)
        self._refuses(s, [str(port), "in use"])

    def test_refuses_unwritable_data_dir(self):
        # Root ignores permission bits, so the portable "cannot write" is a
        # data dir whose parent is a regular file.
        s = self.server(log_level=None)
        blocker = os.path.join(s.tmp, "not-a-dir")
        with open(blocker, "w") as f:
            f.write("x")
        s.data_dir = os.path.join(blocker, "data")
        self._refuses(s, [s.data_dir, "not-a-dir", "data dir", "data-dir"])

    @unittest.skipIf(os.geteuid() == 0, "root can write to a mode 0500 directory")
    def test_refuses_read_only_data_dir(self):
        s = self.server(log_level=None)
        ro = os.path.join(s.tmp, "ro")
        os.mkdir(ro, 0o500)
        self.addCleanup(os.chmod, ro, 0o700)
        s.data_dir = ro
        self._refuses(s, [ro, "data dir", "data-dir"])

    def test_config_file_values_used(self):
        m, h = harness.free_ports(2)
        data = os.path.join(self.tmpdir(), "cfgdata")
        conf = ("# droverd test config\n"
                "data_dir = %s\n"
                "mqtt_listen = %s:%d\n"
                "http_listen = \"%s:%d\"\n"
                "max_body = 1024   # tiny, to see it applied\n"
                "\n" % (data, HOST, m, HOST, h))
        s = self.server(config=conf, use_flags=False, data_dir=data,
                        mqtt_port=m, http_port=h)
        s.start()
        out = s.stdout()
        self.assertIn("mqtt: listening on %s:%d" % (HOST, m), out)
        self.assertIn("http: listening on http://%s:%d" % (HOST, h), out)
        self.assertTrue(os.path.exists(os.path.join(data, "admin.token")))
        st, js = s.api("GET", "/healthz", token=None)
        self.assertEqual((st, js), (200, {"status": "ok"}))
        c = s.app_client("app-cfg")
        self.addCleanup(c.close)
        self.assertEqual(c.connect(), 0)
        c.disconnect()
        big = {"id": harness.uid("cfg"), "tags": {"x": "y" * 200, "z": "w" * 200,
                                                   "a": "b" * 200, "c": "d" * 200,
                                                   "e": "f" * 200}}
        st, js = s.api("POST", "/api/v1/devices", big)
        self.assertEqual(st, 413, "max_body = 1024 from the config file not applied: %r" % (js,))
        s.stop()

    def test_flags_override_config(self):
        cm, ch, fm, fh = harness.free_ports(4)
        other = os.path.join(self.tmpdir(), "from-config")
        conf = ("data_dir = %s\nmqtt_listen = %s:%d\nhttp_listen = %s:%d\n"
                % (other, HOST, cm, HOST, ch))
        s = self.server(config=conf, mqtt_port=fm, http_port=fh)
        s.start()
        out = s.stdout()
        self.assertIn("http: listening on http://%s:%d" % (HOST, fh), out)
        self.assertIn("mqtt: listening on %s:%d" % (HOST, fm), out)
        self.assertEqual(s.api("GET", "/healthz", token=None)[0], 200)
        for port in (cm, ch):
            with self.assertRaises(OSError, msg="config port %d should be unused" % port):
                socket.create_connection((HOST, port), timeout=2).close()
        self.assertTrue(os.path.exists(os.path.join(s.data_dir, "admin.token")),
                        "--data-dir must override data_dir")
        self.assertFalse(os.path.exists(other), "data_dir from the config file was used")
        s.stop()

    def test_bad_config_key_refused(self):
        s = self.server(config="no_such_key = 1\n", log_level=None)
        rc, out, err = s.run_to_exit()
        self.assertNotEqual(rc, 0, "unknown config key accepted")
        self.assertIn("no_such_key", err)
        self.assertEqual(harness.sanitizer_lines(err), [], err)

    def _graceful(self, sig):
        s = self.server()
        s.start()
        dev = harness.uid("sig")
        secret = s.create_device(dev)
        c = s.mqtt(dev, dev, secret)
        self.addCleanup(c.close)
        c.connect_ok()
        self.assertTrue(c.publish("devices/%s/telemetry" % dev, {"temp": 1}))
        app = s.app_client("app-sig")
        self.addCleanup(app.close)
        app.connect_ok()
        app.subscribe("devices/+/status")
        s.stop(sig)  # asserts exit 0 and a clean sanitizer log
        self.assertTrue(c.wait_disconnected(5), "client not disconnected at shutdown")

    def test_sigterm_graceful(self):
        self._graceful(signal.SIGTERM)

    def test_sigint_graceful(self):
        self._graceful(signal.SIGINT)


if __name__ == "__main__":
    harness.main()
