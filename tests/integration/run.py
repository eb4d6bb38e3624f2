#!/usr/bin/python3
"""Runs one integration test area: run.py <area> (e.g. run.py api runs
test_api.py). ctest calls this once per area (see CMakeLists.txt).

Exits 0 only if every test of the area passed. A missing tool or binary is
a failure with a clear message, never a silent skip.
"""

import os
import shutil
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
# Every test_<area>.py beside this file is an area; CMakeLists.txt lists the
# ones ctest runs.
AREAS = sorted(f[len("test_"):-len(".py")] for f in os.listdir(HERE)
               if f.startswith("test_") and f.endswith(".py"))


def problems(area):
    out = []
    try:
        import paho.mqtt  # noqa: F401
        v = paho.mqtt.__version__
        if not v.startswith("1."):
            out.append("python3-paho-mqtt %s found; these tests use the 1.x API "
                       "(Debian 12 ships 1.6)" % v)
    except ImportError:
        out.append("python3-paho-mqtt is missing (apt-get install python3-paho-mqtt; "
                   "run with /usr/bin/python3, not a virtualenv: %s)" % sys.executable)
    for tool in ("mosquitto_pub", "mosquitto_sub", "curl", "stdbuf"):
        if shutil.which(tool) is None:
            out.append("%s is missing (apt-get install %s)" % (
                tool, "mosquitto-clients" if tool.startswith("mosquitto") else tool))
    bd = os.environ.get("DROVER_BUILD_DIR")
    if not bd:
        out.append("DROVER_BUILD_DIR is not set (ctest sets it; by hand: "
                   "DROVER_BUILD_DIR=<build dir> %s %s)" % (sys.argv[0], area))
    else:
        bins = ["droverd"] + (["drover"] if area.startswith("cli") else [])
        for b in bins:
            p = os.path.join(bd, b)
            if not os.access(p, os.X_OK):
                out.append("%s is not built: %s" % (b, p))
    return out


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in AREAS:
        sys.stderr.write("usage: %s <%s>\n" % (sys.argv[0], "|".join(AREAS)))
        return 2
    area = sys.argv[1]
    bad = problems(area)
    if bad:
        sys.stderr.write("integration.%s cannot run:\n  %s\n" % (area, "\n  ".join(bad)))
        return 1
    sys.path.insert(0, HERE)
    suite = unittest.defaultTestLoader.loadTestsFromName("test_" + area)
    if suite.countTestCases() == 0:
        sys.stderr.write("integration.%s: no tests found\n" % area)
        return 1
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    for test, reason in result.skipped:
        sys.stderr.write("SKIPPED %s: %s\n" % (test.id(), reason))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
