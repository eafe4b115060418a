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
import select
import signal
import socket
import subprocess
import sys
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

# The SR-IOV NIC of gpu16: its PF and two of its VFs, each alone in its group.
PF = "0000:60:00.0"
VF0 = "0000:60:10.0"
VF1 = "0000:60:10.2"
USB_HOSTDEV = ("<hostdev mode='subsystem' type='usb' managed='yes'><source>"
               "<vendor id='0x046d'/><product id='0xc52b'/></source></hostdev>")

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
            reply = self.request({"execute": "qmp_capabilities"})
            if "return" not in reply:
                raise AssertionError(f"qmp_capabilities: {reply}")

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


def source_of(addr):
    d, b, sf = addr.split(":")
    s, f = sf.split(".")
    return (f"<source><address type='pci' domain='0x{d}' bus='0x{b}' slot='0x{s}' "
            f"function='0x{f}'/></source>")


def interface_xml(addr, mac=None, vlan=None):
    """An SR-IOV VF as <interface type='hostdev'>, with its MAC and VLAN."""
    mac_xml = f"<mac address='{mac}'/>" if mac else ""
    vlan_xml = f"<vlan><tag id='{vlan}'/></vlan>" if vlan is not None else ""
    return (f"<interface type='hostdev' managed='yes'>{source_of(addr)}{mac_xml}{vlan_xml}"
            f"<alias name='{daemon_test.alias_of(addr)}'/></interface>")


def domain_xml(name, *devices):
    return f"<domain><name>{name}</name><devices>{''.join(devices)}</devices></domain>"


def running_guest(env, addrs, name="guest"):
    """Domain @name, @addrs prepared, then its QEMU stand-in started with
    them and given to the domain: (qemu, qmp)."""
    env.ctl("define", name)
    env.ctl("prepare", name, env.write(f"{name}.xml", hostdev_xml(addrs, name=name)))
    qemu, qmp = env.start_qemu(addrs)
    env.ctl("define", name, "--qmp", qmp, "--pid", str(qemu.pid))
    return qemu, qmp


def start_guest(env, name="guest"):
    """A QEMU stand-in with no device yet, which destroy ends, as @name's."""
    qemu, qmp = env.start_qemu([])
    env.ctl("define", name, "--qmp", qmp, "--pid", str(qemu.pid))
    return qemu


def sim_ctl(env, *commands):
    """Commands of the simulated host's .sim/ctl, one write each."""
    for command in commands:
        with open(os.path.join(env.root, ".sim/ctl"), "w") as f:
            f.write(command)


def sim_vf(env, addr):
    """The MAC and VLAN the simulated PF keeps for VF @addr."""
    dev = next(d for d in env.sim_state()["devices"] if d["address"] == addr)
    return dev["vf"]["mac"], dev["vf"]["vlan"]


def domain_names(env):
    return [d["name"] for d in env.client().execute("query-domains")]


def wait_event(client, name, address=None, timeout=20):
    """The next event @name about @address (None: one with no address) that
    @client receives."""
    client.sock.settimeout(timeout)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ev = client.next_event()
        if ev["event"] == name and ev["data"].get("address") == address:
            return ev
    raise AssertionError(f"no {name} for {address} within {timeout} s")


def qmp_command(path, name, **arguments):
    """Run one command on the stand-in QEMU's monitor at @path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        f = s.makefile("rb")
        f.readline()
        for req in ({"execute": "qmp_capabilities"},
                    {"execute": name, "arguments": arguments}):
            s.sendall((json.dumps(req) + "\n").encode())
            while "event" in (reply := json.loads(f.readline())):
                pass
        return reply


def daemon_threads(env, prefix):
    """hostdevd's threads whose name starts with @prefix."""
    task = f"/proc/{env.daemon.pid}/task"
    names = []
    for tid in os.listdir(task):
        try:
            with open(f"{task}/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return [n for n in names if n.startswith(prefix)]


def malloc_arenas(pid):
    """The glibc malloc arenas of threads in process @pid (the main arena
    aside): each is a heap mapped at a 64 MiB boundary, its read-write
    part followed by the rest of its 64 MiB reserved inaccessible."""
    heap_max = 64 * 1024 * 1024
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            maps.append((start, end, fields[1], len(fields) > 5))
    return sum(1 for (start, end, perms, named), nxt in zip(maps, maps[1:] + [None])
               if start % heap_max == 0 and perms == "rw-p" and not named and
               (end - start == heap_max or
                (nxt and nxt[0] == end and nxt[2] == "---p" and nxt[1] == start + heap_max)))


# ---------------------------------------------------------------- classes

def hostile_request_size(env):
    """Finding 1: an array nested 100,000 deep killed hostdevd (json-glib's
    parser recurses per level), before any handshake.  The size and the
    nesting depth of a request are checked before a parser sees it:
    LimitExceeded, and the connection stays usable; a line over the size
    limit cannot be resynchronized and ends the connection."""
    env.start_daemon()
    deep = b'{"execute": "query-status", "id": ' + b"[" * 100000 + b"]" * 100000 + b"}\n"
    c = Raw(env, negotiate=False)
    check_reply(c.request(deep), "LimitExceeded", "an array 100,000 deep before the handshake")
    check_reply(c.request({"execute": "qmp_capabilities"}), None,
                "... the connection stays usable")
    for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
        line = (b'{"execute": "query-status", "arguments": {"x": ' + opener * 5000 + b"1"
                + closer * 5000 + b"}}\n")
        check_reply(c.request(line), "LimitExceeded",
                    f"{opener.decode()} nested 5,000 deep in the arguments")
    ok_id = json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))
    reply = c.request({"execute": "query-status", "id": ok_id})
    check_reply(reply, None, f"a request {MAX_DEPTH} levels deep is served")
    check(reply["id"] == ok_id, "... and its id comes back")
    check_reply(c.request({"execute": "query-status", "id": [ok_id]}), "LimitExceeded",
                f"{MAX_DEPTH + 1} levels: refused")
    # Brackets inside strings do not count.
    check_reply(c.request({"execute": "define-domain",
                           "arguments": {"name": "[" * 100, "qmp": "/{" * 100}}), None,
                "brackets inside strings are not nesting")
    c.close()

    c = Raw(env)
    try:
        c.send(b'{"execute": "query-status", "id": "' + b"x" * (MAX_REQUEST + 1))
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = c.read()
    check_reply(reply, "LimitExceeded", "a request over 1 MiB")
    check("1048576 bytes" in reply["error"]["desc"], "... names the limit")
    check(c.closed(), "... and the connection ends")
    stop_clean(env)


def hostile_xml(env):
    """Finding 2: a 115 KB domain XML whose <name> used one 100 KB entity
    5,000 times took hostdevd near 2 GB and stalled its main loop 9 s.
    Entity declarations are refused (InvalidArgument naming them) before
    anything expands, and XML is parsed on a worker: a client's request
    is answered while another's 1 MiB document is parsed."""
    env.start_daemon()
    env.ctl("define", "guest")
    c = Raw(env)
    hwm = daemon_test.status_kb(env.daemon.pid, "VmHWM")
    # 100 KB used 1,000 times: 100 MB once expanded (the finding's 5,000
    # times would take the shared test machine's memory).
    blowup = ("<!DOCTYPE domain [<!ENTITY e '" + "x" * 100000 + "'>]>\n<domain><name>"
              + "&e;" * 1000 + "</name></domain>")
    for xml, what in (
            (blowup, "a 100 KB entity used 1,000 times in <name>"),
            ("<!DOCTYPE hostdev [<!ENTITY a 'x'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
             + hostdev_xml([GPU]).replace("alias name='", "alias name='&b;"),
             "nested entities in an attribute"),
            ("<!DOCTYPE domain [<!ENTITY e SYSTEM 'file:///etc/shadow'>]>"
             "<domain><name>guest&e;</name></domain>", "an external entity"),
            ("<!DOCTYPE domain [<!ENTITY % p '<!ENTITY e \"x\">'> %p;]>"
             "<domain><name>guest&e;</name></domain>", "a parameter entity")):
        reply = c.request({"execute": "prepare", "arguments": {"domain": "guest", "xml": xml}})
        check_reply(reply, "InvalidArgument", f"prepare: {what}")
        check("entities are not accepted" in reply["error"]["desc"],
              "... refused as an entity declaration")
    grown = daemon_test.status_kb(env.daemon.pid, "VmHWM") - hwm
    check(grown < 64 * 1024, f"hostdevd's peak memory grew {grown} KiB (< 64 MiB)")
    check(domain_names(env) == ["guest"] and env.state_of(GPU)["state"] != "active",
          "nothing changed")

    # A 1 MiB document that parses for a while (malformed at its very
    # end): another client's status is answered before its error.
    big = "<domain><name>guest</name><devices>"
    big += "<x a='1'/>" * ((MAX_REQUEST - 4096 - len(big)) // 10) + "</devices></domain"
    b = Raw(env)
    first = []
    for attempt in range(3):
        c.send({"execute": "prepare", "arguments": {"domain": "guest", "xml": big}, "id": "a"})
        check_reply(b.request({"execute": "query-status", "id": "b"}), None,
                    f"try {attempt + 1}: status while a 1 MiB XML parses")
        c.sock.setblocking(False)
        try:
            waiting = c.sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            waiting = False
        c.sock.setblocking(True)
        c.sock.settimeout(60)
        first.append(not waiting)
        check_reply(c.read(), "InvalidArgument", "... the 1 MiB XML gets its error")
    check(first.count(True) >= 2,
          f"status answered before the XML's error in {first.count(True)} of 3 tries")
    b.close()
    c.close()
    stop_clean(env)


class UserClients:
    """n connections of @uid (hostdevd sees its SO_PEERCRED), from a forked
    child (the interpreter may not be executable by @uid); .greetings are
    their first messages; close() hangs them all up."""

    def __init__(self, env, uid, n):
        out_r, out_w = os.pipe()
        hold_r, self.hold = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(out_r)
                os.close(self.hold)
                daemon_test.as_user(uid, uid)()
                held = []
                for _ in range(n):
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(30)
                    s.connect(env.sock)
                    f = s.makefile("rb")
                    first = f.readline()
                    if b"QMP" in first:
                        s.sendall(b'{"execute": "qmp_capabilities"}\n')
                        f.readline()
                    os.write(out_w, first)
                    held.append((s, f))
                os.read(hold_r, 1)
            finally:
                os._exit(0)
        os.close(out_w)
        os.close(hold_r)
        with os.fdopen(out_r, "rb") as f:
            self.greetings = [json.loads(f.readline()) for _ in range(n)]

    def close(self):
        os.close(self.hold)
        os.waitpid(self.pid, 0)


def clients_now(env):
    return env.client().execute("query-status")["clients"] - 1


def hostile_connections(env):
    """Finding 3: about 13,000 idle connections took hostdevd to 1.2 GB RSS
    (64 KiB of read buffer each) and status timed out.  A connection limit
    (--max-clients; root has 16 more), LimitExceeded for the connection
    over it; a connection that does not negotiate within
    --handshake-timeout is ended with LimitExceeded; an idle connection
    costs little memory, released when it closes."""
    env.start_daemon("--group", "nogroup", "--max-clients", "8", "--handshake-timeout", "2")
    user = 65534                        # a member of nogroup, not root

    # The handshake timeout: silent, or greeted but not negotiated.
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.settimeout(30)
    silent.connect(env.sock)
    waiting = Raw(env, negotiate=False, timeout=30)
    waiting.send(b'{"execute": "query-st')
    ok = Raw(env)
    time.sleep(2.5)
    check_reply(ok.request({"execute": "query-status"}), None,
                "a negotiated connection stays past the handshake timeout")
    reply = waiting.read()
    check_reply(reply, "LimitExceeded", "no qmp_capabilities within 2 s")
    check("within 2 s" in reply["error"]["desc"], "... named")
    check(waiting.closed(), "... and the connection ends")
    data = silent.makefile("rb").read()
    check(b"QMP" in data and b"LimitExceeded" in data, "a silent connection too")
    ok.close()
    wait_for(lambda: clients_now(env) == 0, "every connection gone")

    # The limit: a group member fills it, root still gets in (16 more).
    holder = UserClients(env, user, 9)
    greetings = holder.greetings
    check(all("QMP" in g for g in greetings[:8]), "8 connections of a group member")
    check(greetings[8].get("error", {}).get("class") == "LimitExceeded" and
          "limit 8" in greetings[8]["error"]["desc"],
          "the 9th gets LimitExceeded: too many connections (limit 8)")
    roots = [Raw(env) for _ in range(15)]
    check(clients_now(env) == 8 + 15, "root still gets in: 15 more, and a 16th to count them")
    roots.append(Raw(env))
    check_reply(Raw(env, negotiate=False).greeting, "LimitExceeded",
                "root's 17th beyond the limit: LimitExceeded")
    for c in roots:
        c.close()
    holder.close()
    wait_for(lambda: clients_now(env) == 0, "closed connections free their places")
    holder = UserClients(env, user, 8)
    check(all("QMP" in g for g in holder.greetings), "... and a group member gets 8 again")
    holder.close()
    stop_clean(env)

    # Memory: 600 idle connections (fds allowing), three times.  ASan's
    # quarantine would keep what they free from being used again.
    asan_options = os.environ.get("ASAN_OPTIONS", "")
    os.environ["ASAN_OPTIONS"] = asan_options + ":quarantine_size_mb=0"
    env.start_daemon("--max-clients", "700")
    os.environ["ASAN_OPTIONS"] = asan_options
    wait_for(lambda: clients_now(env) == 0, "no connection")

    def rss():
        return daemon_test.status_kb(env.daemon.pid, "VmRSS")
    before = rss()
    for turn in range(3):
        idle = [Raw(env) for _ in range(600)]
        wait_for(lambda: clients_now(env) == 600, "600 idle connections")
        if turn == 0:
            grown = rss() - before
            per = grown * 1024 // 600
            # A 64 KiB read buffer each before; ASan's redzones inflate the
            # rest (about 1.1 KiB without, 6 KiB with).
            bound = 48 if asan_build() else 16
            check(per < bound * 1024,
                  f"an idle connection costs {per} bytes of RSS (< {bound} KiB)")
        for c in idle:
            c.close()
        wait_for(lambda: clients_now(env) == 0, "600 connections closed")
        if turn == 0:
            after_first = rss()
    # What 600 connections held is released when they close, and serves
    # the next ones: 13,000 connections had kept 1.2 GB after they closed.
    growth = rss() - after_first
    check(growth < grown // 4, f"twice 600 more idle connections, opened and closed: RSS "
          f"{growth:+d} KiB (the first 600 took {grown} KiB)")
    stop_clean(env)


def hostile_fairness(env):
    """Finding 3: 1,000 pipelined query-devices on one connection delayed
    another client's status by 23 s (all of them ran first).  Requests run round robin between
    connections; a connection has at most 32 requests in the daemon, and
    beyond that it is not read (flow control): its writes wait, nothing is
    refused or lost, however much it pipelines without reading; at most 4
    of its requests run on workers at once."""
    env.start_daemon()
    n = 1000
    replies = []
    first = threading.Event()
    other = Raw(env)
    # All at once, before hostdevd even accepted the connection: it reads
    # them in one piece.  Each defines a domain: how many domains status
    # counts says how many ran before it.
    flood = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    flood.connect(env.sock)
    flood.sendall(b'{"execute": "qmp_capabilities"}\n' + b"".join(
        json.dumps({"execute": "define-domain", "arguments": {"name": f"f{i:04}"},
                    "id": i}).encode() + b"\n" for i in range(n)))
    flood_in = flood.makefile("rb")
    check("QMP" in json.loads(flood_in.readline()) and "return" in
          json.loads(flood_in.readline()), f"a client pipelines {n} define-domain")

    def reader():
        for _ in range(n):
            replies.append(json.loads(flood_in.readline()))
            first.set()
    threading.Thread(target=reader, daemon=True).start()
    check(first.wait(600), "the flood is served")
    reply = other.request({"execute": "query-status"})
    check_reply(reply, None, "another client's status during the flood")
    ran = reply["return"]["domains"]
    check(ran < n // 10, f"... answered once {ran} of the {n} pipelined requests ran")
    wait_for(lambda: len(replies) == n, "every pipelined request answered", timeout=600)
    check([r.get("id") for r in replies] == list(range(n)) and
          all("return" in r for r in replies), "... in order, none refused")
    other.close()
    flood_in.close()
    flood.close()

    # query-devices reads sysfs on a worker: a status sent after it is
    # answered first.
    a, b = Raw(env), Raw(env)
    first = 0
    for attempt in range(3):
        a.send({"execute": "query-devices", "id": "a"})
        check_reply(b.request({"execute": "query-status"}), None,
                    f"try {attempt + 1}: status while query-devices runs")
        a.sock.setblocking(False)
        try:
            first += a.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            first += 1
        a.sock.settimeout(60)
        check_reply(a.read(), None, "... query-devices answers")
    check(first >= 2, f"status answered before query-devices in {first} of 3 tries")
    a.close()
    b.close()

    # Pipelined operations take at most 4 workers at once.
    c = Raw(env)
    resets = [GPU, AUDIO, GPU2, AUDIO2] * 3
    done = []

    def read_resets():
        for _ in resets:
            done.append(c.read())
    threading.Thread(target=read_resets, daemon=True).start()
    c.send(b"".join(json.dumps({"execute": "nodedev-reset", "arguments": {"address": addr},
                                "id": i}).encode() + b"\n" for i, addr in enumerate(resets)))
    watcher = env.client()
    peak = 0
    while len(done) < len(resets):
        peak = max(peak, watcher.execute("query-status")["operations"])
        time.sleep(0.005)
    check(all("return" in r for r in done) and 0 < peak <= 4,
          f"{len(resets)} pipelined nodedev-reset: at most {peak} at once (<= 4)")
    watcher.close()
    c.close()

    # A client that pipelines without reading is not read either: its
    # writes wait, and once it reads, every request has its reply.
    c = Raw(env)
    c.sock.setblocking(False)
    line = b'{"execute": "query-status"}\n'
    sent = 0
    while sent < 20000 * len(line):
        try:
            sent += c.sock.send(line * 64)
        except BlockingIOError:
            # Stopped for good, or for a while?
            if not select.select([], [c.sock], [], 2)[1]:
                break
    requests = -(-sent // len(line))
    check(requests < 20000, f"a client that does not read: hostdevd stopped reading it after "
          f"{requests} requests")
    c.sock.settimeout(60)
    threading.Thread(target=c.send, daemon=True,
                     args=(line[sent % len(line):] if sent % len(line) else b"",)).start()
    time.sleep(0.5)
    check(env.client().execute("query-status")["clients"] == 2, "... it is still connected")
    answered = 0
    try:
        while answered < requests and "return" in c.read():
            answered += 1
    except ConnectionError:
        pass
    check(answered == requests, f"... and once it reads, all {answered} requests are answered")
    c.close()
    stop_clean(env)


# Every string argument of every command, with a valid value for the rest
# (none of these may change anything when one string is bad).
STRING_ARGS = [
    ("define-domain", {"name": "s1"}, "name"),
    ("define-domain", {"name": "s1", "qmp": "/run/s1.qmp"}, "qmp"),
    ("define-domain", {"name": "s1", "cgroup": "/sys/fs/cgroup/s1"}, "cgroup"),
    ("define-domain", {"name": "s1", "seclabel": "system_u:object_r:svirt_image_t:s0"},
     "seclabel"),
    ("undefine-domain", {"name": "guest"}, "name"),
    ("query-domains", {"name": "guest"}, "name"),
    ("nodedev-detach", {"address": GPU2}, "address"),
    ("nodedev-reattach", {"address": GPU2}, "address"),
    ("nodedev-reset", {"address": GPU2}, "address"),
    ("prepare", {"domain": "guest", "xml": hostdev_xml([GPU2, AUDIO2])}, "domain"),
    ("prepare", {"domain": "guest", "xml": hostdev_xml([GPU2, AUDIO2])}, "xml"),
    ("attach-device", {"domain": "guest", "xml": hostdev_xml([GPU2, AUDIO2])}, "domain"),
    ("attach-device", {"domain": "guest", "xml": hostdev_xml([GPU2, AUDIO2])}, "xml"),
    ("detach-device", {"domain": "guest", "xml": hostdev_xml([AUDIO])}, "domain"),
    ("detach-device", {"domain": "guest", "xml": hostdev_xml([AUDIO])}, "xml"),
    ("destroy", {"domain": "guest"}, "domain"),
]
# Appended to a valid value: NUL (json-glib cut the string there), ESC and
# CR (a terminal obeys them), DEL, C1's CSI, a lone surrogate (not UTF-8).
BAD_SUFFIXES = ["\x00junk", "\x1b[2J", "\rX", "\x7f", "\x9b31m", "\ud800"]


class FakeDaemon(threading.Thread):
    """A hostdevd stand-in on a UNIX socket whose every string carries
    control characters, for what hostdevctl prints."""
    EVIL = "evil\x1b]0;pwned\x07\x1b[2J\rX\x9b31m\x7f"

    def __init__(self, path):
        super().__init__(daemon=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)

    def reply(self, req):
        e = self.EVIL
        dev = {"address": e, "group": 11, "state": e, "driver": e, "original-driver": e,
               "domain": e, "managed": True}
        returns = {
            "qmp_capabilities": {},
            "query-devices": {"groups": [{"group": 11, "pending": False, "devices": [dev]}]},
            "query-domains": [{"name": e, "qmp": e, "pid": 1, "pid-start": 1, "cgroup": e,
                               "seclabel": e, "busy": False, "devices": [dev]}],
            "query-status": {"version": e, "root": e, "state-dir": e, "domains": 1,
                             "tracked-devices": 1, "operations": 0, "pending-groups": [],
                             "security-pending": [e]},
            "nodedev-detach": {"siblings-on-host": [e]},
            "detach-device": {"released": 1, "groups-given-back": 0, "groups-pending": 1,
                              "problem": e},
            "destroy": {"devices": 1, "given-back": 1, "stay": 0, "killed": False,
                        "adopted": 0, "terminate-seconds": 0.1, "give-back-seconds": 0.1,
                        "problems": [e]},
        }
        if req["execute"] in returns:
            return {"return": returns[req["execute"]], "id": req.get("id")}
        return {"error": {"class": "InvalidArgument", "desc": e}, "id": req.get("id")}

    def run(self):
        event = {"event": "DESTROY_PROGRESS", "data": {"domain": self.EVIL, "given-back": 1,
                                                       "total": 1},
                 "timestamp": {"seconds": 0, "microseconds": 0}}
        while True:
            conn, _ = self.listener.accept()
            try:
                conn.sendall(b'{"QMP": {"version": {"package": "hostdevd 0.1.0", '
                             b'"protocol": 1}, "capabilities": []}}\n')
                for line in conn.makefile("rb"):
                    out = [event, self.reply(json.loads(line)), event]
                    conn.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in out))
            except OSError:
                pass
            conn.close()


def unprintable(text):
    """The control characters (but the line feed) in @text."""
    return sorted({hex(ord(ch)) for ch in text
                   if (ord(ch) < 0x20 and ch != "\n") or 0x7f <= ord(ch) <= 0x9f})


def hostile_strings(env):
    """Finding 6: an address "0000:11:00.0\\u0000junk" detached 0000:11:00.0, a
    name "ab\\u0000cd" defined "ab", names with ESC and CR were accepted and
    printed raw.  Every string argument of every command refuses NUL,
    control characters and invalid UTF-8 (InvalidArgument, nothing
    changed), XML keeps its layout, and hostdevctl never prints a control
    character a daemon sent."""
    env.start_daemon()
    qemu, qmp = running_guest(env, [GPU, AUDIO])
    drivers = env.drivers()
    domains = env.client().execute("query-domains")

    c = Raw(env)
    for command, args, name in STRING_ARGS:
        for suffix in BAD_SUFFIXES:
            bad = dict(args)
            bad[name] = args[name] + suffix
            reply = c.request({"execute": command, "arguments": bad, "id": 1})
            if reply.get("error", {}).get("class") != "InvalidArgument":
                raise AssertionError(f"{command} {name}+{suffix!r}: {reply}")
        print(f"ok - {command}: '{name}' with NUL, ESC, CR, DEL, C1 or a lone surrogate: "
              "InvalidArgument", flush=True)
    reply = c.request({"execute": "define-domain", "arguments": {"name": "ab\x00cd"}})
    check("NUL" in reply["error"]["desc"], "the error names the NUL")
    reply = c.request({"execute": "define-domain", "arguments": {"name": "a\x1bb"}})
    check("U+001B" in reply["error"]["desc"] and "'arguments.name'" in reply["error"]["desc"],
          "the error names the control character and the argument")
    for where in ({"id": "\x1b[2J"}, {"arguments": {"\x1b": 1}}, {"execute": "query-status\r"}):
        req = dict({"execute": "query-status"}, **where)
        check_reply(c.request(req), "InvalidArgument", f"a control character in {where}")
    check(env.drivers() == drivers and env.client().execute("query-domains") == domains,
          "nothing changed: no device moved, no domain defined")

    # The XML's own strings: its <name> (a character reference) and aliases.
    for xml in ("<domain><name>guest&#x9b;</name><devices/></domain>",
                hostdev_xml([GPU2]).replace("alias name='", "alias name='&#x9b;")):
        reply = c.request({"execute": "prepare", "arguments": {"domain": "guest", "xml": xml}})
        check_reply(reply, "InvalidArgument", "a control character in the XML: " + xml[:40])
        check("U+009B" in reply["error"]["desc"], "... named")
    # A document keeps its tabs and line breaks.
    xml = hostdev_xml([GPU2, AUDIO2], name="guest").replace("\n", "\r\n\t")
    check_reply(c.request({"execute": "prepare", "arguments": {"domain": "guest", "xml": xml}}),
                None, "an XML with tabs, CR and LF is served")
    c.close()
    env.ctl("destroy", "guest")

    # hostdevctl against a daemon whose every string is hostile.
    fake_sock = os.path.join(env.work, "fake.sock")
    FakeDaemon(fake_sock).start()
    xml = env.write("f.xml", hostdev_xml([GPU]))
    for args in (["list"], ["domains"], ["status"], ["nodedev-detach", GPU], ["define", "x"],
                 ["detach-device", "x", xml], ["destroy", "x"], ["events", "--count", "1", "--timeout", "20"]):
        for json_out in ([], ["--json"]):
            p = subprocess.run([HOSTDEVCTL, "--socket", fake_sock, *json_out, *args],
                               capture_output=True, timeout=30)
            out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
            if unprintable(out) or "evil" not in out:
                raise AssertionError(f"hostdevctl {' '.join(json_out + args)} printed "
                                     f"{unprintable(out)}:\n{out}")
        print(f"ok - hostdevctl {args[0]}: the daemon's control characters are escaped",
              flush=True)
    stop_clean(env)


def hostile_leak(env):
    """Finding 4: every save of the domain list leaked the JSON root taken
    from the builder (17 KB a save with many domains, after every prepare,
    attach, detach and destroy).  Every command runs, then hostdevd must
    exit without a leak (stop_clean); in a build without LeakSanitizer its
    RSS must not grow with saves, and its threads must share one malloc
    arena (the soak's RSS crept up with arenas of their own)."""
    env.start_daemon()
    orig = env.drivers()
    qemu, qmp = running_guest(env, [GPU, AUDIO])
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
        # Workers and monitor threads ran the commands: they share the
        # main arena (hddMallocSetup), whose free memory malloc_trim
        # gives back; arenas of their own kept theirs.
        arenas = malloc_arenas(env.daemon.pid)
        check(arenas == 0, f"hostdevd's threads have no malloc arena of their own ({arenas})")
        c = env.client()
        for i in range(50):
            c.execute("define-domain", name=f"d{i:02}", qmp=f"/run/d{i:02}.qmp")
        before = daemon_test.status_kb(env.daemon.pid, "VmRSS")
        for i in range(1000):
            c.execute("define-domain", name=f"d{i % 50:02}", pid=0)
        grown = daemon_test.status_kb(env.daemon.pid, "VmRSS") - before
        check(grown < 2048, f"1,000 saves of 50 domains: RSS grew {grown} KiB (< 2 MiB)")
    stop_clean(env)


def hostile_signal(env):
    """Finding 5: a client of the socket's group defined a domain with the pid
    of any process, pid 1 included, and destroy sent it SIGTERM.  Who may
    do what (docs/hostdevd.rst): destroy signals only a process it can
    prove is the domain's QEMU (it holds the domain's groups, or is the
    peer of its QMP socket), never pid 1 or hostdevd itself, never another
    uid's process unless root gave the pid; a domain is its definer's (and
    root's) alone."""
    env.start_daemon("--group", "nogroup")
    user = 65534                        # a member of nogroup, not root

    def running(p):
        return p.poll() is None

    # pid 1 and hostdevd itself: refused at define, even for root.
    p = env.ctl("define", "x", "--pid", "1", expect=3)
    check("init process" in p.stderr, "define --pid 1 is refused, even for root")
    p = env.ctl("define", "x", "--pid", str(env.daemon.pid), expect=3)
    check("own process" in p.stderr, "define --pid of hostdevd itself is refused")
    check(json.loads(env.ctl("--json", "domains").stdout) == [], "... and nothing is defined")

    # A client of the group: its own processes only.
    root_proc = subprocess.Popen(["sleep", "300"])
    user_proc = subprocess.Popen(["sleep", "300"], preexec_fn=daemon_test.as_user(user, user))
    env.procs += [root_proc, user_proc]
    env.user_ctl(user, "define", "mine")
    p = env.user_ctl(user, "define", "mine", "--pid", str(root_proc.pid), expect=3)
    check(f"runs as uid 0, not as uid {user}" in p.stderr,
          "a group member may not give a root process as its QEMU")
    env.user_ctl(user, "define", "mine", "--pid", str(user_proc.pid))
    dom = env.domain("mine")
    check(dom["owner-uid"] == user and dom["pid"] == user_proc.pid,
          "a group member defines its domain with its own process")

    # destroy signals only the domain's QEMU: this one holds none of its
    # groups and is not the peer of a QMP socket.
    p = env.user_ctl(user, "destroy", "mine", expect=3)
    check("not the QEMU of domain mine" in p.stderr and running(user_proc),
          "destroy refuses to signal a process that is not the domain's QEMU")
    env.ctl("define", "rootdom", "--pid", str(root_proc.pid))
    p = env.ctl("destroy", "rootdom", expect=3)
    check("not the QEMU of domain rootdom" in p.stderr and running(root_proc),
          "... also when root defined it with a root process")

    # A domain is its definer's: another uid may neither change nor use it.
    for args in (("define", "rootdom", "--pid", "0"), ("undefine", "rootdom"),
                 ("destroy", "rootdom"),
                 ("prepare", "rootdom", env.write("r.xml", hostdev_xml([GPU, AUDIO])))):
        p = env.user_ctl(user, *args, expect=3)
        check("belongs to uid 0" in p.stderr, f"uid {user} may not {args[0]} root's domain")
    check(env.domain("rootdom")["pid"] == root_proc.pid,
          "... and root's domain is unchanged")
    check(env.driver(GPU) == "nvidia", "... nor the host")
    # Root may: it clears the pid of the user's domain, which stays the user's.
    env.ctl("define", "mine", "--pid", "0")
    env.ctl("define", "rootdom", "--pid", "0")
    dom = env.domain("mine")
    check(dom["pid"] == 0 and dom["owner-uid"] == user, "root may change a user's domain")
    env.user_ctl(user, "undefine", "mine")
    env.ctl("undefine", "rootdom")
    check(running(root_proc) and running(user_proc), "no process was signalled")

    # Across a restart the owners stay.
    env.user_ctl(user, "define", "kept")
    env.stop_daemon()
    env.start_daemon("--group", "nogroup")
    check(env.domain("kept")["owner-uid"] == user, "the owner is durable")
    env.ctl("undefine", "kept")

    # The peer of the domain's QMP socket is its QEMU, even while it holds
    # no group of the domain; another process given with that socket is not.
    qemu, qmp = env.start_qemu([])
    env.ctl("define", "peer", "--qmp", qmp, "--pid", str(root_proc.pid))
    p = env.ctl("destroy", "peer", expect=3)
    check("not the QEMU of domain peer" in p.stderr and running(root_proc) and running(qemu),
          "destroy refuses a pid that is not the peer of the domain's QMP socket")
    env.ctl("define", "peer", "--pid", str(qemu.pid))
    env.ctl("destroy", "peer")
    check(qemu.wait(timeout=10) is not None and running(root_proc),
          "destroy signals the peer of the domain's QMP socket")
    env.ctl("undefine", "peer")

    # The domain's QEMU, holding its groups, is signalled.
    env.ctl("define", "guest")
    env.ctl("prepare", "guest", env.write("g.xml", hostdev_xml([GPU, AUDIO], name="guest")))
    qemu, qmp = env.start_qemu([GPU, AUDIO])
    env.ctl("define", "guest", "--pid", str(qemu.pid))
    p = env.ctl("destroy", "guest")
    check(qemu.wait(timeout=10) is not None and env.driver(GPU) == "nvidia",
          "destroy signals the domain's QEMU, proven by the groups it holds")
    check(env.violations() == 0, "no viability violation")
    stop_clean(env)


def hostile_xml_files(env):
    """Finding 7: 'hostdevctl prepare x /dev/zero' (or a FIFO) never returned,
    the 1 MiB cap being checked after reading the whole file; a valid XML
    file declared as ISO-8859-1 was refused as "not a JSON object".  Files
    are read with a bound, regular files only, and converted to UTF-8 by the
    encoding they declare; what cannot be decoded is refused, naming the
    file."""
    env.start_daemon()
    orig = env.drivers()

    # /dev/zero never ends, a FIFO without a writer blocks its reader: both
    # are refused at once, before anything is read.
    fifo = os.path.join(env.work, "fifo.xml")
    os.mkfifo(fifo)
    for path, kind in (("/dev/zero", "character device"), (fifo, "FIFO"),
                       (env.work, "directory")):
        p = env.ctl("prepare", "guest", path, expect=2, timeout=10)
        check(path in p.stderr and kind in p.stderr and "not a regular file" in p.stderr,
              f"a {kind} is refused at once, named")
    big = env.write("big.xml", "<!--" + "x" * (2 * 1024 * 1024) + "-->")
    p = env.ctl("prepare", "guest", big, expect=2)
    check("1048576 bytes" in p.stderr, "a file over 1 MiB is refused, the bound named")

    # A file within 1 MiB may not fit in hostdevd's 1 MiB request once
    # escaped as a JSON string: hostdevctl says so, naming the file, and
    # sends nothing.  The two limits meet exactly: a request of 1048576
    # bytes is taken, one byte more is hostdevctl's error.
    env.ctl("define", "guest")
    base = domain_xml("guest", hostdev_xml([VF0]))

    def padded(pad):
        return env.write("padded.xml", f"<!--{pad}-->{base}")

    def request_size(pad):
        # json-glib's compact form: no spaces, members in hostdevctl's order.
        return len(json.dumps({"execute": "prepare", "arguments": {
            "domain": "guest", "xml": f"<!--{pad}-->{base}"}, "id": 2},
            ensure_ascii=False, separators=(",", ":")).encode())
    quotes = '"' * (600 * 1024)
    path = padded(quotes)
    p = env.ctl("prepare", "guest", path, expect=2)
    check(os.path.getsize(path) < MAX_REQUEST and path in p.stderr and
          "escaped as JSON" in p.stderr and f"more than the {MAX_REQUEST}" in p.stderr,
          "a 600 KiB file of quotes, twice that escaped: refused by hostdevctl, naming the "
          "file and the limit")
    check("request larger than" not in open(env.log).read(), "... hostdevd got none of it")
    fit = "x" * (MAX_REQUEST - request_size(""))
    env.ctl("prepare", "guest", padded(fit + "x"), expect=2)
    check(env.state_of(VF0)["state"] != "active", "a request 1 byte over: hostdevctl's error")
    env.ctl("prepare", "guest", padded(fit))
    check(env.state_of(VF0)["domain"] == "guest", "a request of exactly 1048576 bytes is taken")
    env.ctl("destroy", "guest")

    # A valid ISO-8859-1 file, and a UTF-16 one with its byte order mark.
    name = "g\u00e4st"
    env.ctl("define", name)
    latin1 = env.write("latin1.xml", "")
    with open(latin1, "wb") as f:
        f.write(("<?xml version='1.0' encoding='ISO-8859-1'?>\n"
                 + domain_xml(name, hostdev_xml([VF0]))).encode("latin-1"))
    env.ctl("prepare", name, latin1)
    check(env.state_of(VF0)["domain"] == name,
          "an ISO-8859-1 file is converted: its <name> matches the domain")
    utf16 = env.write("utf16.xml", "")
    with open(utf16, "wb") as f:
        f.write(("<?xml version='1.0' encoding='UTF-16'?>\n"
                 + domain_xml(name, hostdev_xml([VF1]))).encode("utf-16"))
    env.ctl("prepare", name, utf16)
    check(env.state_of(VF1)["domain"] == name, "a UTF-16 file with a byte order mark too")
    env.ctl("destroy", name)

    # What cannot be decoded is refused by hostdevctl, naming the file.
    for what, data, says in [
        ("Latin-1 bytes declaring no encoding",
         domain_xml(name, hostdev_xml([VF0])).encode("latin-1"), "not valid UTF-8"),
        ("an unknown encoding",
         b"<?xml version='1.0' encoding='x-no-such'?><domain/>", "unknown encoding"),
        ("bytes the declared encoding does not have",
         b"<?xml version='1.0' encoding='Shift_JIS'?><domain><name>\x82\xff</name></domain>",
         "not valid Shift_JIS"),
        ("UTF-16 declared without a byte order mark",
         b"<?xml version='1.0' encoding='UTF-16'?><domain/>", "UTF-16"),
        ("a NUL byte", b"<domain><name>a\0b</name></domain>", "NUL"),
    ]:
        path = env.write("bad.xml", "")
        with open(path, "wb") as f:
            f.write(data)
        p = env.ctl("prepare", name, path, expect=2)
        check(path in p.stderr and says in p.stderr, f"{what}: refused, naming the file")
    check(env.drivers() == orig, "nothing changed on the host")
    stop_clean(env)


def hostile_lone_device(env):
    """Finding 8: a lone <hostdev> was refused by prepare and attach-device
    ("VF network settings need a <domain> with a <name>"), though
    docs/protocol.rst accepts it and virsh attach-device takes it.  A lone
    <hostdev> or <interface type='hostdev'> is served; VF settings are for
    the domain the request names, and an error says what is really
    missing."""
    env.start_daemon()
    orig = env.drivers()
    start_guest(env)
    env.ctl("prepare", "guest", env.write("vf0.xml", hostdev_xml([VF0])))
    check(env.state_of(VF0)["domain"] == "guest", "prepare takes a lone <hostdev>")
    env.ctl("attach-device", "guest", env.write("vf1.xml", hostdev_xml([VF1])))
    check(env.state_of(VF1)["domain"] == "guest", "attach-device takes a lone <hostdev>")
    env.ctl("destroy", "guest")
    check(env.drivers() == orig, "both VFs given back")

    # With the PF away from its driver the VF has no PF interface to set
    # its MAC on: the error says exactly that, no <name> is asked for.
    start_guest(env)
    env.ctl("nodedev-detach", PF)
    p = env.ctl("prepare", "guest",
                env.write("if.xml", interface_xml(VF1, mac="52:54:00:aa:bb:01", vlan=7)),
                expect=None)
    check(p.returncode != 0 and "no network interface" in p.stderr
          and "<name>" not in p.stderr,
          "a lone <interface type='hostdev'>: the real reason it fails, no <name> asked for")
    p = env.ctl("prepare", "guest", env.write("other.xml", domain_xml("other",
                                                                       hostdev_xml([VF0]))),
                expect=4)
    check("describes domain 'other'" in p.stderr, "a <domain> named otherwise is refused")
    env.ctl("nodedev-reattach", PF)
    env.ctl("destroy", "guest")
    check(env.drivers() == orig, "everything given back")
    stop_clean(env)


def hostile_failed_prepare(env):
    """Finding 9: after a prepare failed on a VF interface, every later
    prepare of the domain failed with the same VF error, even without the
    interface, until undefine + define.  A failed prepare leaves nothing:
    its devices go back, the devices the domain had stay, no security
    record or pending work is left, the domain's definition is unchanged,
    and the next prepare (or attach) succeeds."""
    env.start_daemon()
    orig = env.drivers()
    start_guest(env)
    # The VF cannot get its MAC: its PF is away from its driver.
    env.ctl("nodedev-detach", PF)
    env.ctl("prepare", "guest",
            env.write("g.xml", domain_xml("guest", hostdev_xml([GPU, AUDIO]))))
    before_sec = env.security_records()
    before_doms = env.state_json("hostdevd-domains.json")
    for attempt in (1, 2):
        bad = env.write("bad.xml", domain_xml("guest", hostdev_xml([GPU2, AUDIO2]),
                                              interface_xml(VF0, mac="52:54:00:aa:bb:02")))
        env.ctl("prepare", "guest", bad, expect=None)
        check(env.state_of(GPU)["domain"] == "guest" and
              env.state_of(AUDIO)["domain"] == "guest",
              f"failed prepare {attempt}: the devices the domain had before stay")
        check(all(env.driver(a) == orig[a] for a in (GPU2, AUDIO2, VF0)),
              f"failed prepare {attempt}: its own devices are given back")
    check(env.security_records() == before_sec == [],
          "no security record is left")
    check(env.state_json("hostdevd-domains.json") == before_doms,
          "the domain's definition (aliases) is as it was")
    status = json.loads(env.ctl("--json", "status").stdout)
    check(status["security-pending"] == [] and status["pending-groups"] == [],
          "nothing is left pending")
    # The next prepare of the domain, without the interface, works; so does
    # an attach.
    env.ctl("prepare", "guest", env.write("ok.xml", domain_xml("guest",
                                                                hostdev_xml([GPU2, AUDIO2]))))
    check(env.state_of(GPU2)["domain"] == "guest", "the next prepare without the VF succeeds")
    env.ctl("attach-device", "guest", env.write("vf1.xml", hostdev_xml([VF1])))
    check(env.state_of(VF1)["domain"] == "guest", "... and so does an attach-device")
    env.ctl("destroy", "guest")
    env.ctl("nodedev-reattach", PF)
    check(env.drivers() == orig, "everything given back")

    # The PF refuses the VF's settings, and keeps refusing: the prepare
    # fails and the settings saved before cannot even be put back yet.  The
    # next prepare of the VF takes that pending restore over (no sweep runs
    # in between), and what goes back in the end is what the VF had first.
    env.stop_daemon()
    env.start_daemon("--sweep-ms", "600000")
    start_guest(env)
    sim_ctl(env, f"vf {VF1} mac 02:aa:00:00:00:01", f"vf {VF1} vlan 5",
            f"fault {VF1} vf fail")
    failing = env.write("vf.xml", domain_xml("guest", interface_xml(VF1, "52:54:00:aa:bb:03",
                                                                    42)))
    events = env.client()
    env.ctl("prepare", "guest", failing, expect=None)
    check(env.driver(VF1) == orig[VF1] and sim_vf(env, VF1) == ("02:aa:00:00:00:01", 5),
          "a VF its PF refuses: the prepare fails, the VF is home, unchanged")
    problems = [wait_event(events, "SECURITY_PROBLEM")["data"] for _ in range(2)]
    check([(p["kind"], p.get("domain")) for p in problems] ==
          [("setup", "guest"), ("cleanup", "guest")] and all(p["message"] for p in problems),
          "SECURITY_PROBLEM events: the setup, then the restore, each with its domain")
    events.close()
    check(json.loads(env.ctl("--json", "status").stdout)["security-pending"] ==
          [f"vf {VF1}"], "... and restoring its settings is pending")
    log = open(env.log).read()
    check("domain guest: security setup failed, its assignment fails" in log and
          "domain guest: security cleanup failed, retried later" in log and
          "security cleanup: " not in log,
          "hostdevd's log says what failed: the VF's setup, then its restore (retried)")
    sim_ctl(env, f"fault {VF1} vf ok")
    env.ctl("prepare", "guest", failing)
    check(sim_vf(env, VF1) == ("52:54:00:aa:bb:03", 42),
          "the next prepare of the VF takes the pending restore over")
    env.ctl("destroy", "guest")
    wait_for(lambda: sim_vf(env, VF1) == ("02:aa:00:00:00:01", 5), "the first settings back")
    check(env.security_records() == [], "the VF goes home with what it had first")

    # A restore left pending is retried by the sweep, with no group pending.
    env.stop_daemon()
    env.start_daemon()
    start_guest(env)
    sim_ctl(env, f"fault {VF1} vf fail")
    env.ctl("prepare", "guest", failing, expect=None)
    sim_ctl(env, f"fault {VF1} vf ok")
    wait_for(lambda: json.loads(env.ctl("--json", "status").stdout)["security-pending"] == [],
             "the pending restore retried")
    check(env.security_records() == [] and sim_vf(env, VF1) == ("02:aa:00:00:00:01", 5),
          "a restore left pending is retried once the PF takes it")
    env.ctl("destroy", "guest")
    check(env.drivers() == orig, "everything given back")
    stop_clean(env)


def hostile_notes(env):
    """Finding 10: a skipped USB hostdev's note was in neither the reply nor
    the log.  The notes of the XML parser are in the replies of prepare,
    attach-device and detach-device, in hostdevd's log (a warning) and
    printed by hostdevctl; with no PCI device left the error names them."""
    env.start_daemon("--log-level", "warning")
    orig = env.drivers()
    start_guest(env)
    xml = env.write("usb.xml", domain_xml("guest", USB_HOSTDEV, hostdev_xml([VF0])))
    note = "line 1: <hostdev type='usb'> skipped"
    p = env.ctl("prepare", "guest", xml)
    check("note: " + note in p.stderr, "hostdevctl prints the note of a skipped USB hostdev")
    check(note in open(env.log).read(), "hostdevd logs the note at the default level")
    env.ctl("destroy", "guest")
    ret = json.loads(env.ctl("--json", "prepare", "guest", xml).stdout)
    check(any(note in n for n in ret["notes"]), "the reply of prepare carries the note")
    env.ctl("destroy", "guest")
    start_guest(env)
    ret = json.loads(env.ctl("--json", "attach-device", "guest", xml).stdout)
    check(any(note in n for n in ret["notes"]), "the reply of attach-device carries the note")
    ret = json.loads(env.ctl("--json", "detach-device", "guest", xml).stdout)
    check(any(note in n for n in ret["notes"]), "the reply of detach-device carries the note")
    ret = json.loads(env.ctl("--json", "prepare", "guest",
                             env.write("plain.xml", hostdev_xml([VF0]))).stdout)
    check(ret["notes"] == [], "a reply without anything skipped has no note")
    p = env.ctl("prepare", "guest", env.write("usb-only.xml", domain_xml("guest", USB_HOSTDEV)),
                expect=4)
    check("no PCI hostdev" in p.stderr and note in p.stderr,
          "a domain with only a USB hostdev: the error says why")
    env.ctl("destroy", "guest")
    check(env.drivers() == orig, "every device home")
    stop_clean(env)


def hostile_late_unplug(env):
    """Finding 12: a slow guest answered the unplug after hostdevd's fixed
    deadline; hostdevd, no longer connected, missed DEVICE_DELETED, kept the
    device active until destroy, and a second detach failed at device_del.
    hostdevd keeps one monitor connected per domain: a late DEVICE_DELETED
    moves the device to the inactive list and on to the give-back, as if
    it had come in time; a retry while the guest still unplugs waits again;
    an event missed while QEMU's monitor was away, or while hostdevd was
    down, is recognised from QEMU's device list once the monitor is back.
    The deadline is a parameter: per request, and --unplug-timeout."""
    daemon_opts = ("--unplug-timeout", "300")

    def xml(addr):
        return env.write("d.xml", hostdev_xml([addr]))

    def pending():
        return env.domain("guest")["unplug-pending"]

    env.start_daemon(*daemon_opts)
    orig = env.drivers()
    devices = [GPU, AUDIO, GPU2, AUDIO2]
    env.ctl("define", "guest")
    env.ctl("prepare", "guest", env.write("g.xml", hostdev_xml(devices, name="guest")))
    # A slow guest: it lets a device go 1.5 s after device_del.
    qemu, qmp = env.start_qemu(devices, "--unplug-delay-ms", "1500")
    env.ctl("define", "guest", "--qmp", qmp, "--pid", str(qemu.pid))
    wait_for(lambda: daemon_threads(env, "hdd-qmp-guest"), "the domain's monitor thread")
    events = env.client()

    # The deadline's bounds, checked before anything happens.
    c = env.client()
    for command, value in (("detach-device", 0), ("detach-device", 3600001),
                           ("detach-device", -5), ("prepare", 1000)):
        try:
            c.execute(command, domain="guest", xml=hostdev_xml([GPU]), unplug_timeout=value)
            check(False, f"{command} with unplug-timeout {value} is refused")
        except daemon_test.client_mod.HostdevError as e:
            check(e.klass == "InvalidArgument" and "unplug-timeout" in e.desc,
                  f"{command} with unplug-timeout {value}: InvalidArgument")
    c.close()
    check(pending() == [] and env.state_of(GPU)["state"] == "active", "... nothing changed")
    p = subprocess.run([daemon_test.HOSTDEVD, "--unplug-timeout", "-1"], capture_output=True,
                       text=True, timeout=30)
    check(p.returncode != 0 and "--unplug-timeout must be" in p.stderr,
          "hostdevd --unplug-timeout -1 refuses to start")


    # The daemon's deadline passes: a timeout, the device still assigned.
    p = env.ctl("detach-device", "guest", xml(GPU), expect=7)
    check("within 300 ms" in p.stderr and "keeps listening" in p.stderr,
          "--unplug-timeout 300: detach-device times out (exit 7), hostdevd keeps listening")
    check(pending() == [GPU] and env.state_of(GPU)["state"] == "active",
          "... the device stays assigned, its unplug pending")
    # Its QEMU cannot change meanwhile: a monitor of another QEMU would find
    # the device gone and release it while this one still has it.
    for opts in (["--qmp", qmp + ".new"], ["--pid", str(os.getpid())]):
        p = env.ctl("define", "guest", *opts, expect=6)
        check(f"unplug of {GPU} pending" in p.stderr and pending() == [GPU] and
              (env.domain("guest")["qmp"], env.domain("guest")["pid"]) == (qmp, qemu.pid),
              f"define {opts[0]} while the unplug is pending: refused, nothing changed")
    env.ctl("define", "guest", "--qmp", qmp, "--pid", str(qemu.pid))
    check(pending() == [GPU], "... the same QEMU again is fine")
    # The guest lets go: QEMU's late DEVICE_DELETED releases it.
    wait_event(events, "DEVICE_RELEASED", GPU)
    wait_for(lambda: pending() == [], "the pending unplug resolved")
    check(env.state_of(GPU)["state"] == "inactive" and env.driver(GPU) == "vfio-pci",
          "a late DEVICE_DELETED moves the device to the inactive list (its sibling stays)")

    # A request's own deadline; then a retry while QEMU still waits for the
    # guest: QEMU refuses a second device_del, hostdevd waits again.
    p = env.ctl("detach-device", "guest", xml(AUDIO), "--unplug-timeout", "0.2", expect=7)
    check("within 200 ms" in p.stderr, "a request's own deadline (0.2 s)")
    p = env.ctl("detach-device", "guest", xml(AUDIO), "--unplug-timeout", "10")
    check("1 released, 1 group(s) given back" in p.stdout,
          "a retry during the unplug waits for it, and does not fail at device_del")
    check(env.driver(GPU) == orig[GPU] and env.driver(AUDIO) == orig[AUDIO] and pending() == [],
          "... the group is given back")

    # QEMU's monitor goes away; the guest lets go meanwhile, unheard; the
    # monitor comes back: hostdevd reconnects and asks QEMU's device list.
    env.ctl("detach-device", "guest", xml(GPU2), expect=7)
    qemu.send_signal(signal.SIGUSR1)
    time.sleep(2.5)
    check(pending() == [GPU2] and env.state_of(GPU2)["state"] == "active",
          "while QEMU's monitor is away the unplug stays pending")
    qemu.send_signal(signal.SIGUSR2)
    wait_for(lambda: pending() == [], "the monitor back, the unplug resolved", timeout=30)
    check(env.state_of(GPU2)["state"] == "inactive",
          "the monitor reconnects, QEMU's device list says the device left: released")

    # hostdevd is down while the guest lets go; restarted, it connects the
    # monitor again and finds out.
    env.ctl("detach-device", "guest", xml(AUDIO2), expect=7)
    env.stop_daemon()
    time.sleep(2.0)
    env.start_daemon(*daemon_opts)
    # The give-back runs before the resolution's end records it.
    wait_for(lambda: env.drivers() == orig and pending() == [],
             "the group given back after the restart", timeout=30)
    check(True, "a restarted hostdevd resolves the unplug pending across it")

    # The guest ejects a device by itself: QEMU's DEVICE_DELETED, which
    # nobody asked for, releases it all the same.
    env.ctl("attach-device", "guest", env.write("a.xml", hostdev_xml([GPU, AUDIO],
                                                                      name="guest")))
    qmp_command(qmp, "x-guest-eject", id=daemon_test.alias_of(AUDIO))
    wait_for(lambda: env.state_of(AUDIO)["state"] == "inactive" and pending() == [],
             "the ejected device released")
    check(env.state_of(GPU)["state"] == "active",
          "a device the guest ejects leaves the domain; its sibling stays")
    qmp_command(qmp, "x-guest-eject", id=daemon_test.alias_of(GPU))
    wait_for(lambda: env.drivers() == orig and pending() == [],
             "the group given back after the second eject")
    check(True, "... and the group goes back when its last device is ejected")

    # Unplugs pending while the devices leave the domain with no daemon
    # running (here the manager's tool, after QEMU died) are over at start.
    env.ctl("attach-device", "guest", env.write("a.xml", hostdev_xml([GPU, AUDIO],
                                                                      name="guest")))
    env.ctl("detach-device", "guest",
            env.write("d2.xml", hostdev_xml([GPU, AUDIO], name="guest")), expect=7)
    check(pending() == [GPU, AUDIO], "two devices with their unplug pending")
    env.stop_daemon()
    qemu.kill()
    qemu.wait()
    subprocess.run([daemon_test.MGR_TOOL, env.root, env.state, "release-domain", "guest"],
                   check=True, capture_output=True)
    env.start_daemon(*daemon_opts)
    check(pending() == [], "a restarted hostdevd forgets the unplugs of devices that left")
    # ... and their aliases: the guest's next run gives GPU with no alias
    # (as an inactive XML does), and its QEMU may call it otherwise now.  A
    # detach without an alias is refused, not sent as the last run's
    # device_del.
    qemu = start_guest(env)
    env.ctl("prepare", "guest", env.write("na.xml", domain_xml(
        "guest", hostdev_xml([GPU], aliases=False), hostdev_xml([AUDIO]))))
    p = env.ctl("detach-device", "guest",
                env.write("na1.xml", hostdev_xml([GPU], name="guest", aliases=False)),
                expect=None)
    check(p.returncode != 0 and f"device {GPU} has no alias in the XML and none is known"
          in p.stderr and env.state_of(GPU)["state"] == "active",
          "... and their aliases: a detach with no alias in a new run is refused")

    # Destroy ends the domain's monitor with its QEMU.
    check(daemon_threads(env, "hdd-qmp-guest") != [], "the domain's monitor runs")
    env.ctl("destroy", "guest")
    wait_for(lambda: not daemon_threads(env, "hdd-qmp-guest"), "the monitor's end")
    check(True, "destroy ends the domain's monitor")
    qemu.wait(timeout=10)
    saved = next(d for d in env.state_json("hostdevd-domains.json") if d["name"] == "guest")
    check(saved["aliases"] == {}, "destroy: no alias outlives the devices that left")
    env.ctl("undefine", "guest")
    wait_for(lambda: env.drivers() == orig, "every device home")
    check(env.violations() == 0, "every device home, no viability violation")
    stop_clean(env)


def hostile_vf_interface(env):
    """Finding 11: VF interfaces could not be tried end to end on the
    simulated host (its PFs had no net/: any <interface type='hostdev'>
    failed, after binding and rolling back every device).  An SR-IOV VF as
    <interface type='hostdev'> end to end: its PF's rtnetlink sets its MAC
    and VLAN for the guest, and the ones it had come back when it is given
    back (detach-device, destroy)."""
    env.start_daemon()
    orig = env.drivers()
    vf, vf0 = "0000:60:10.2", "0000:60:10.0"
    # What the host's admin had set for the VF (ip link set PF vf 1 ...).
    sim_ctl(env, f"vf {vf} mac 02:aa:00:00:00:01", f"vf {vf} vlan 5")

    def vf_state():
        dev = next(d for d in env.sim_state()["devices"] if d["address"] == vf)
        return dev["vf"]["mac"], dev["vf"]["vlan"], dev["netdev"]

    def iface(mac, vlan=None):
        d, b, sf = vf.split(":")
        sl, fn = sf.split(".")
        vlan_xml = f"<vlan><tag id='{vlan}'/></vlan>" if vlan is not None else ""
        return (f"<interface type='hostdev' managed='yes'><source><address type='pci' "
                f"domain='0x{d}' bus='0x{b}' slot='0x{sl}' function='0x{fn}'/></source>"
                f"<mac address='{mac}'/>{vlan_xml}<alias name='{daemon_test.alias_of(vf)}'/></interface>")

    env.ctl("define", "guest")
    xml = f"<domain><name>guest</name><devices>{iface('52:54:00:6d:90:02', 42)}" \
          f"{hostdev_xml([vf0])}</devices></domain>"
    env.ctl("prepare", "guest", env.write("g.xml", xml))
    check(env.driver(vf) == "vfio-pci" and vf_state() == ("52:54:00:6d:90:02", 42, None),
          "prepare: the VF is on vfio-pci with the guest's MAC and VLAN, set by its PF")
    rec = next(r for r in env.security_records() if r["kind"] == "vf")
    check((rec["pf"], rec["index"], rec["mac"], rec["vlan"]) ==
          ("enp96s0", 1, "02:aa:00:00:00:01", 5),
          "what the PF had for the VF is recorded before it changes")

    qemu, qmp = env.start_qemu([vf, vf0])
    env.ctl("define", "guest", "--qmp", qmp, "--pid", str(qemu.pid))
    env.ctl("detach-device", "guest", env.write("vf.xml", iface("52:54:00:6d:90:02", 42)))
    wait_for(lambda: env.driver(vf) == "ixgbevf", "the VF given back")
    wait_for(lambda: vf_state() == ("02:aa:00:00:00:01", 5, "enp96s0v1"),
             "the VF's MAC and VLAN restored")
    check(True, "detach-device: the VF goes home with the MAC and VLAN it had")

    # Hot-plugged as a lone <interface>: no <vlan> means untagged.
    env.ctl("attach-device", "guest", env.write("vf2.xml", iface("52:54:00:6d:90:03")))
    check(vf_state() == ("52:54:00:6d:90:03", 0, None),
          "attach-device of a lone <interface>: its MAC, untagged")
    env.ctl("destroy", "guest")
    qemu.wait(timeout=10)
    wait_for(lambda: vf_state() == ("02:aa:00:00:00:01", 5, "enp96s0v1"),
             "the VF's settings restored after destroy")
    check(env.drivers() == orig, "destroy: every device home, the VF's settings as they were")
    status = json.loads(env.ctl("--json", "status").stdout)
    check(status["security-pending"] == [] and env.security_records() == [],
          "no security record left")
    events = open(os.path.join(env.root, ".sim/events")).read()
    check(events.count('"vf-set", "device": "0000:60:10.2"') >= 6,
          "every change went through the PF's rtnetlink (vf-set events)")
    stop_clean(env)


def hostile_monitors(env):
    """Finding 12's persistent monitors cost a thread each: a client that
    defines domains by the thousand must not exhaust hostdevd's threads.
    Past the limit (1024; 1 here) a domain keeps no monitor, defines still
    work, attach-device and detach-device say why they cannot; once a
    monitor goes (undefine, destroy) the next domain gets one."""
    env.start_daemon("--max-monitors", "1")
    orig = env.drivers()
    qemu_a, qmp_a = env.start_qemu([])
    qemu_b, qmp_b = env.start_qemu([], qmp="qemu-b.qmp")
    env.ctl("define", "a", "--qmp", qmp_a, "--pid", str(qemu_a.pid))
    env.ctl("define", "b", "--qmp", qmp_b, "--pid", str(qemu_b.pid))
    wait_for(lambda: daemon_threads(env, "hdd-qmp-") == ["hdd-qmp-a"], "a's monitor")
    check("for 1 domains already, its limit" in open(env.log).read(),
          "past the limit a domain is defined without a monitor, and the log says why")
    p = env.ctl("attach-device", "b", env.write("b.xml", hostdev_xml([GPU, AUDIO], name="b")),
                expect=1)
    check("its limit" in p.stderr and env.drivers() == orig,
          "attach-device without a monitor: refused, nothing changed")
    env.ctl("undefine", "a")
    wait_for(lambda: daemon_threads(env, "hdd-qmp-") == [], "a's monitor gone")
    env.ctl("attach-device", "b", env.write("b.xml", hostdev_xml([GPU, AUDIO], name="b")))
    check(daemon_threads(env, "hdd-qmp-") == ["hdd-qmp-b"] and env.driver(GPU) == "vfio-pci",
          "once a monitor went, the next domain gets one")
    env.ctl("destroy", "b")
    qemu_b.wait(timeout=10)
    check(env.drivers() == orig and not daemon_threads(env, "hdd-qmp-"),
          "destroyed: every device home, no monitor left")

    # A QEMU whose monitor accepts and never greets: the monitor waits for
    # it (10 s); a domain's end must not wait for the monitor.
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent_path = os.path.join(env.work, "silent.qmp")
    silent.bind(silent_path)
    silent.listen(4)
    env.ctl("define", "s", "--qmp", silent_path)
    conn, _ = silent.accept()
    start = time.monotonic()
    env.ctl("undefine", "s")
    took = time.monotonic() - start
    check(took < 5, f"undefine with its monitor waiting for a silent QEMU: {took:.1f} s (< 5)")
    wait_for(lambda: not daemon_threads(env, "hdd-qmp-"), "the monitor's thread ends by itself",
             timeout=30)
    conn.close()
    silent.close()
    stop_clean(env)


def hostile_shutdown(env):
    """Second pass: SIGTERM while a destroy ran let the destroy finish (the
    devices went home) but closed its client's connection at once, so the
    management stack never got the reply of a destroy that succeeded.  A
    shutdown takes no new connection or request, lets the running ones
    finish and sends their replies (and events) before it ends the
    connections."""
    env.start_daemon()
    orig = env.drivers()
    addrs = [GPU, AUDIO, GPU2, AUDIO2]
    qemu, qmp = running_guest(env, addrs)
    watcher = Raw(env)
    conn = Raw(env)
    conn.send({"execute": "destroy", "arguments": {"domain": "guest"}, "id": "d"})
    while conn.read().get("event") != "DEVICE_RELEASED":
        pass
    pid = env.daemon.pid
    env.daemon.send_signal(signal.SIGTERM)
    replies = []
    try:
        while True:
            msg = conn.read()
            if "event" not in msg:
                replies.append(msg)
    except ConnectionError:
        pass
    check(len(replies) == 1 and replies[0].get("id") == "d" and
          replies[0].get("return", {}).get("given-back") == len(addrs),
          f"the destroy running at SIGTERM is answered before the connection ends: {replies}")
    events = []
    try:
        while True:
            events.append(watcher.read().get("event"))
    except ConnectionError:
        pass
    check("DESTROY_PROGRESS" in events,
          "another client still gets the running destroy's events")
    rc = env.daemon.wait(timeout=60)
    env.daemon = None
    with open(env.log) as f:
        log = f.read()
    check(rc == 0 and "Sanitizer" not in log, f"hostdevd {pid} exits cleanly (exit {rc})")
    check(env.drivers() == orig and env.violations() == 0,
          "every device is home, no viability violation")
    conn.close()
    watcher.close()


def hostile_state_files(env):
    """Second pass: an entry of hostdevd-domains.json that hostdevd could
    not use (not an object, a name that is not a string, a duplicate) was
    skipped in silence, a member of the wrong type read as 0 (GLib
    criticals in the log), a name with control characters taken as it
    was: the domain, with the QEMU it names, was gone, and lost for good
    at the next save, while its devices stayed assigned to it.  A file
    that is not JSON was refused without saying which file.  Now hostdevd
    does not start, as on a bad state.json, and names the file, the entry
    and what is wrong; the file is left as it is, and once it is repaired
    nothing was lost."""
    env.start_daemon()
    orig = env.drivers()
    qemu, qmp = running_guest(env, [GPU, AUDIO])
    env.ctl("define", "spare")
    env.stop_daemon()
    path = os.path.join(env.state, "hostdevd-domains.json")
    with open(path, "rb") as f:
        good = f.read()
    saved = json.loads(good)
    guest = next(d for d in saved if d["name"] == "guest")
    bad_pid = dict(guest, pid="4242")
    cases = [
        ([{"name": 5}] + saved, "entry 1: not an object with a 'name'"),
        (["spare"] + saved, "entry 1: not an object with a 'name'"),
        ([bad_pid], "entry 1: domain 'guest': member 'pid' must be an integer"),
        ([dict(guest, aliases=[1])], "member 'aliases' must be an object of strings"),
        (saved + [guest], "domain 'guest' is defined twice"),
        ([{"name": "x\u001b[2Jy"}] + saved, "invalid domain name \"x\\033[2Jy\""),
        ("\x00\x01 not JSON", "domain definitions '" + path + "' are malformed"),
    ]
    for content, expected in cases:
        data = content.encode() if isinstance(content, str) else json.dumps(content).encode()
        with open(path, "wb") as f:
            f.write(data)
        p = subprocess.Popen([daemon_test.HOSTDEVD, "--foreground", "--root", env.root,
                              "--state-dir", env.state, "--socket", env.sock],
                             stderr=subprocess.PIPE, text=True, env=env.daemon_env())
        try:
            rc = p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = "still running: it started on the file"
            p.kill()
            p.wait()
        stderr = p.stderr.read()
        p.stderr.close()
        with open(path, "rb") as f:
            kept = f.read()
        check(rc not in (0, None) and isinstance(rc, int) and expected in stderr and
              path in stderr and "\x1b" not in stderr and kept == data,
              f"hostdevd refuses {data[:50]!r}, names the file and says: {expected} "
              f"(exit {rc}: {stderr.strip()})")
    with open(path, "wb") as f:
        f.write(good)
    env.start_daemon()
    check(sorted(domain_names(env)) == ["guest", "spare"] and
          env.domain("guest")["pid"] == qemu.pid,
          "the file repaired, every domain is back with its QEMU")
    env.ctl("destroy", "guest")
    check(qemu.wait(timeout=10) is not None and env.drivers() == orig and
          env.violations() == 0, "destroy ends its QEMU and gives every device back")
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
