#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile input against hostdevd on the simulated host (issue 14).

    test-hostile.py CLASS

One function per class of attack, hostile_CLASS(env), run by meson as the
test hostile-CLASS (suite 'sim').  Each gets its own simulated gpu16 host
and hostdevd (test-daemon.py's Env and run(): root, /dev/fuse, a private
mount namespace; exit 77 when something is absent), and ends with
stop_clean(): hostdevd must still be alive, exit 0 on SIGTERM and, in the
ASan build, without a sanitizer report (leaks included: GSlice is told to
use malloc so that LeakSanitizer sees JSON nodes).

Adding a class (other helpers of issue 14 do):
  1. below, a function `def hostile_NAME(env):` whose docstring names the
     finding and what must hold; start the daemon with env.start_daemon()
     (extra hostdevd options as arguments), use check() for every claim,
     Raw for byte-level requests, and end with stop_clean(env);
  2. 'NAME' in `hostile_classes` in tests/daemon/meson.build.
  A class must fail against a hostdevd without its fix (check it once).
Helpers are shared: add one here when two classes need it.
"""
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
daemon_test = importlib.import_module("test-daemon")
check = daemon_test.check
hostdev_xml = daemon_test.hostdev_xml
wait_for = daemon_test.wait_for
GPU, AUDIO, GPU2, AUDIO2 = daemon_test.GPU, daemon_test.AUDIO, daemon_test.GPU2, \
    daemon_test.AUDIO2
HOSTDEVCTL = daemon_test.HOSTDEVCTL
BUILD = daemon_test.BUILD

MAX_REQUEST = 1024 * 1024       # docs/protocol.rst, Limits
MAX_DEPTH = 32


# ---------------------------------------------------------------- helpers

class Raw:
    """A connection that sends bytes as they are and reads one message per
    line; negotiates unless told not to."""

    def __init__(self, env, negotiate=True, timeout=60):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(env.sock)
        self.file = self.sock.makefile("rb")
        self.greeting = self.read()
        if negotiate:
            check_reply(self.request({"execute": "qmp_capabilities"}), None, "negotiated")

    def read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("hostdevd closed the connection")
        return json.loads(line)

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else
                          (json.dumps(data) + "\n").encode())

    def request(self, data):
        """Send, then the next reply (events skipped)."""
        self.send(data)
        while True:
            msg = self.read()
            if "event" not in msg:
                return msg

    def closed(self):
        """Whether hostdevd ended the connection (after what it sent)."""
        try:
            while self.file.readline():
                pass
            return True
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.file.close()
        self.sock.close()


def check_reply(reply, klass, what):
    """reply is an error of @klass, or a return when @klass is None."""
    if klass is None:
        ok = "return" in reply
    else:
        ok = reply.get("error", {}).get("class") == klass
    if not ok:
        raise AssertionError(f"{what}: expected {klass or 'a return'}, got {reply}")
    print(f"ok - {what}", flush=True)


def asan_build():
    path = os.path.join(BUILD, "meson-info", "intro-buildoptions.json")
    try:
        with open(path) as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
    except OSError:
        return False
    return "address" in str(opts.get("b_sanitize", ""))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise KeyError("VmRSS")


def stop_clean(env):
    """hostdevd survived: it still answers, exits 0 on SIGTERM, and
    reported no sanitizer error (leaks included) on its way out."""
    check(env.client().execute("query-status")["version"], "hostdevd still answers")
    pid = env.daemon.pid
    rc = env.stop_daemon()
    with open(env.log) as f:
        log = f.read()
    check(rc == 0 and "Sanitizer" not in log,
          f"hostdevd {pid} exits cleanly, nothing leaked (exit {rc})")


def domain_names(env):
    return [d["name"] for d in env.client().execute("query-domains")]


# ---------------------------------------------------------------- classes

def hostile_leak(env):
    """Finding 4: every save of the domain list leaked the JSON root taken
    from the builder (17 KB a save with many domains, after every prepare,
    attach, detach and destroy).  Every command runs, then hostdevd must
    exit without a leak (stop_clean); in a build without LeakSanitizer its
    RSS must not grow with saves."""
    env.start_daemon()
    orig = env.drivers()
    env.ctl("define", "guest")
    env.ctl("prepare", "guest", env.write("g.xml", hostdev_xml([GPU, AUDIO], name="guest")))
    qemu, qmp = env.start_qemu([GPU, AUDIO])
    env.ctl("define", "guest", "--qmp", qmp, "--pid", str(qemu.pid))
    env.ctl("attach-device", "guest",
            env.write("a.xml", hostdev_xml([GPU2, AUDIO2], name="guest")))
    env.ctl("detach-device", "guest",
            env.write("d.xml", hostdev_xml([GPU2, AUDIO2], name="guest")))
    env.ctl("nodedev-detach", GPU2)
    env.ctl("nodedev-reset", GPU2)
    env.ctl("nodedev-reattach", GPU2)
    for verb in ("list", "domains", "status"):
        env.ctl(verb)
    env.ctl("prepare", "nobody", env.write("n.xml", hostdev_xml([GPU2])), expect=5)
    env.ctl("destroy", "guest")
    qemu.wait(timeout=10)
    env.ctl("undefine", "guest")
    check(env.drivers() == orig, "every command ran, every device is home")

    if not asan_build():
        c = env.client()
        for i in range(50):
            c.execute("define-domain", name=f"d{i:02}", qmp=f"/run/d{i:02}.qmp")
        before = rss_kb(env.daemon.pid)
        for i in range(1000):
            c.execute("define-domain", name=f"d{i % 50:02}", pid=0)
        grown = rss_kb(env.daemon.pid) - before
        check(grown < 2048, f"1,000 saves of 50 domains: RSS grew {grown} KiB (< 2 MiB)")
    stop_clean(env)


def main():
    name = sys.argv[1].replace("-", "_") if len(sys.argv) == 2 else ""
    if not name or "hostile_" + name not in globals():
        print(__doc__, file=sys.stderr)
        return 2
    # Inherited by hostdevd: LeakSanitizer sees what GSlice allocates.
    os.environ["G_SLICE"] = "always-malloc"
    return daemon_test.run(globals()["hostile_" + name])


if __name__ == "__main__":
    sys.exit(main())
