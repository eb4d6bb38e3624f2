#!/usr/bin/python3
"""Runs one MQTT conformance area: run.py <area> (e.g. run.py connect runs
test_connect.py) against the real droverd started with paho.conf. ctest
calls this once per area (see CMakeLists.txt).

Exits 0 only if every test of the area passed. A missing tool or binary is
a failure with a clear message, never a silent skip.
By hand: DROVER_BUILD_DIR=<build dir> /usr/bin/python3 tests/conformance/run.py connect
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
AREAS = sorted(f[len("test_"):-len(".py")] for f in os.listdir(HERE)
               if f.startswith("test_") and f.endswith(".py"))


def problems():
    out = []
    try:
        import paho.mqtt  # noqa: F401  (the harness imports it)
    except ImportError:
        out.append("python3-paho-mqtt is missing (apt-get install python3-paho-mqtt; "
                   "run with /usr/bin/python3, not a virtualenv: %s)" % sys.executable)
    bd = os.environ.get("DROVER_BUILD_DIR")
    if not bd:
        out.append("DROVER_BUILD_DIR is not set (ctest sets it; by hand: "
                   "DROVER_BUILD_DIR=<build dir> %s <area>)" % sys.argv[0])
    elif not os.access(os.path.join(bd, "droverd"), os.X_OK):
        out.append("droverd is not built: %s" % os.path.join(bd, "droverd"))
    if not os.path.exists(os.path.join(HERE, "paho.conf")):
        out.append("tests/conformance/paho.conf is missing")
    return out


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in AREAS:
        sys.stderr.write("usage: %s <%s>\n" % (sys.argv[0], "|".join(AREAS)))
        return 2
    area = sys.argv[1]
    bad = problems()
    if bad:
        sys.stderr.write("conformance.%s cannot run:\n  %s\n" % (area, "\n  ".join(bad)))
        return 1
    sys.path.insert(0, HERE)
    suite = unittest.defaultTestLoader.loadTestsFromName("test_" + area)
    if suite.countTestCases() == 0:
        sys.stderr.write("conformance.%s: no tests found\n" % area)
        return 1
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    sys.stderr.write("conformance.%s: %d tests in %.1fs\n"
                     % (area, result.testsRun, time.monotonic() - t0))
    for test, reason in result.skipped:
        sys.stderr.write("SKIPPED %s: %s\n" % (test.id(), reason))
    return 0 if result.wasSuccessful() and not result.skipped else 1


if __name__ == "__main__":
    sys.exit(main())
