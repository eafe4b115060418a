#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Soak: hostdevd under 10,000 random operations on the simulated host.

    bench-soak.py [OPS]          (default 10000, or $HD_BENCH_OPS)

A simulated gpu16 host (its kernel costs scaled down by $HD_BENCH_SCALE,
default 0.02, so that the run takes minutes), one hostdevd, four domains
each with a stand-in QEMU (scripts/demo-qemu.py).  Random operations from
one client: every query, define and undefine, prepare, attach-device,
detach-device (one function or the whole group), destroy (its QEMU ended,
a new one started), nodedev-detach/reattach/reset, and hostile requests
(malformed, nested too deep, strings with control characters, over the
size limit, connections that never negotiate or come and go).  Errors the
request deserves (InUse, NotFound, ...) are counted; a request answered
with an error it does not deserve, a lost connection or a dead daemon
fails the run, as does any device not back on its driver or any
viability violation at the end.

Measured (build/bench/soak.json):
  rss_before_kb, rss_after_kb  hostdevd's RSS after a warm-up of 1,000
      operations and after the OPS operations, each time once every
      domain is destroyed, every group given back and hostdevd idle for
      a second (target: growth under 1 MiB);
  flood_status_p99_ms  one client's query-status, 300 times, while another
      pipelines query-devices without pause (target: under 100 ms);
  flood_requests  the requests the flooding client sent meanwhile (some
      still in its socket, held back by flow control), flood_answered
      those it got a reply to.
Targets are printed with the results; only correctness fails the run.
Needs root and /dev/fuse (exit 77 otherwise); the machine's load makes
the timings noisy.
"""
import importlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "daemon"))
daemon_test = importlib.import_module("test-daemon")
client_mod = daemon_test.client_mod
check = daemon_test.check
wait_for = daemon_test.wait_for
hostdev_xml = daemon_test.hostdev_xml
alias_of = daemon_test.alias_of

WARMUP = 1000
DOMAINS = ["soak0", "soak1", "soak2", "soak3"]
FLOOD_SAMPLES = 300
# Errors a valid request may deserve, by the state it meets.
DESERVED = {"InvalidArgument", "NotFound", "InUse", "NotViable", "OperationFailed", "State",
            "Timeout", "PermissionDenied"}


def scaled_topology(work):
    """gpu16 with every kernel cost scaled by $HD_BENCH_SCALE."""
    scale = float(os.environ.get("HD_BENCH_SCALE", "0.02"))
    with open(daemon_test.TOPOLOGY) as f:
        topo = json.load(f)
    for dev in topo["devices"]:
        for key in ("release_ms", "probe_ms", "reset_ms"):
            if key in dev:
                dev[key] = int(dev[key] * scale)
    path = os.path.join(work, "soak-topology.json")
    with open(path, "w") as f:
        json.dump(topo, f)
    return path


class Soak:
    def __init__(self, env, seed):
        self.env = env
        self.rng = random.Random(seed)
        self.orig = env.drivers()
        self.groups = {}            # group -> [addresses]
        for addr, driver in sorted(self.orig.items()):
            if driver in ("nvidia", "snd_hda_intel"):
                self.groups.setdefault(env.group_of(addr), []).append(addr)
        self.qemu = {}              # domain -> (Popen, qmp path)
        self.attached = {d: set() for d in DOMAINS}   # devices QEMU took
        self.counts = {}
        self.unexpected = []
        self.c = env.client()

    # -- the domains' QEMUs

    def start_qemu(self, dom):
        qmp = os.path.join(self.env.work, f"{dom}.qmp")
        p = subprocess.Popen([sys.executable, daemon_test.FAKE_QEMU, "--socket", qmp,
                              "--root", self.env.root], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        self.env.procs.append(p)
        self.qemu[dom] = (p, qmp)
        self.c.execute("define-domain", name=dom, qmp=qmp, pid=p.pid)
        self.attached[dom] = set()

    # -- bookkeeping

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def run(self, command, **args):
        """One request; its outcome counted.  Returns the reply or None."""
        try:
            ret = self.c.execute(command, **args)
            self.count(f"{command}: ok")
            return ret
        except client_mod.HostdevError as e:
            self.count(f"{command}: {e.klass}")
            if e.klass not in DESERVED:
                self.unexpected.append(f"{command} {args}: {e}")
            return None

    def xml(self, dom, addrs):
        return hostdev_xml(addrs, name=dom)

    # -- operations

    def op_query(self):
        self.run(self.rng.choice(["query-devices", "query-status", "query-domains"]))

    def op_define(self):
        dom = self.rng.choice(DOMAINS)
        self.run("define-domain", name=dom, qmp=self.qemu[dom][1], pid=self.qemu[dom][0].pid)

    def op_undefine(self):
        # Refused while the domain has devices; defined again at once.
        dom = self.rng.choice(DOMAINS)
        if self.run("undefine-domain", name=dom) is not None:
            self.run("define-domain", name=dom, qmp=self.qemu[dom][1],
                     pid=self.qemu[dom][0].pid)

    def op_prepare(self):
        dom = self.rng.choice(DOMAINS)
        group = self.rng.choice(list(self.groups))
        self.run("prepare", domain=dom, xml=self.xml(dom, self.groups[group]))

    def op_attach(self):
        dom = self.rng.choice(DOMAINS)
        addrs = self.groups[self.rng.choice(list(self.groups))]
        if self.run("attach-device", domain=dom, xml=self.xml(dom, addrs)) is not None:
            self.attached[dom] |= set(addrs)

    def op_detach(self):
        dom = self.rng.choice(DOMAINS)
        if not self.attached[dom]:
            return self.op_query()
        addr = self.rng.choice(sorted(self.attached[dom]))
        group = self.groups[self.env.group_of(addr)]
        addrs = [a for a in group if a in self.attached[dom]] if self.rng.random() < 0.5 \
            else [addr]
        if self.run("detach-device", domain=dom, xml=self.xml(dom, addrs)) is not None:
            self.attached[dom] -= set(addrs)

    def op_destroy(self, dom=None):
        dom = dom or self.rng.choice(DOMAINS)
        if self.run("destroy", domain=dom) is not None:
            try:
                self.qemu[dom][0].wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.unexpected.append(f"destroy {dom}: its QEMU is still running")
                self.qemu[dom][0].kill()
            self.start_qemu(dom)

    def op_nodedev(self):
        addr = self.rng.choice(sorted(self.orig))
        self.run(self.rng.choice(["nodedev-detach", "nodedev-reattach", "nodedev-reset"]),
                 address=addr)

    def op_hostile(self):
        kind = self.rng.randrange(7)
        self.count(f"hostile {kind}")
        if kind == 0:
            self.raw(b"this is not json\n")
        elif kind == 1:
            self.raw(b'{"execute": "query-status", "id": ' + b"[" * 5000 + b"]" * 5000
                     + b"}\n")
        elif kind == 2:
            self.raw(json.dumps({"execute": "define-domain",
                                 "arguments": {"name": "x\x00y\x1b[2J"}}).encode() + b"\n")
        elif kind == 3:
            self.raw(b'{"execute": "no-such-command"}\n')
        elif kind == 4:
            # Over the size limit: the connection ends; a new one.
            try:
                self.c.send_raw(b'{"execute": "query-status", "id": "'
                                + b"x" * (1024 * 1024 + 10) + b'"}\n')
                self.c._read()
            except OSError:
                pass
            self.c.close()
            self.c = self.env.client()
        elif kind == 5:
            # A connection that never negotiates (ended by the timeout).
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.env.sock)
            self.idle.append(s)
            if len(self.idle) > 20:
                self.idle.pop(0).close()
        else:
            # Connections that come and go.
            for _ in range(5):
                self.env.client().close()

    def raw(self, line):
        """A bad request: an error reply, the connection goes on."""
        self.c.send_raw(line)
        while True:
            msg = self.c._read()
            if "event" not in msg:
                break
        if "error" not in msg:
            self.unexpected.append(f"{line[:60]!r}: {msg}")

    def step(self):
        ops = [(self.op_query, 30), (self.op_define, 5), (self.op_undefine, 2),
               (self.op_prepare, 12), (self.op_attach, 14), (self.op_detach, 14),
               (self.op_destroy, 4), (self.op_nodedev, 9), (self.op_hostile, 10)]
        func = self.rng.choices([f for f, _ in ops], weights=[w for _, w in ops])[0]
        func()

    def quiesce(self):
        """Every domain destroyed, every group back home."""
        for dom in DOMAINS:
            self.op_destroy(dom)
        for addr, driver in self.orig.items():
            if self.env.driver(addr) == "vfio-pci" and driver != "vfio-pci":
                self.run("nodedev-reattach", address=addr)

        def home():
            st = self.c.execute("query-status")
            return not st["pending-groups"] and st["tracked-devices"] == 0 and \
                self.env.drivers() == self.orig
        wait_for(home, "every group given back", timeout=120)

    def status_latencies(self):
        """FLOOD_SAMPLES query-status of a client of their own, in ms, sorted."""
        status = self.env.client()
        samples = []
        for _ in range(FLOOD_SAMPLES):
            t = time.monotonic()
            status.execute("query-status")
            samples.append((time.monotonic() - t) * 1000)
            time.sleep(0.005)
        status.close()
        return sorted(samples)

    def flood(self):
        """status_latencies() while another client pipelines query-devices
        (a process of its own: no GIL shared with the measure), and how
        many requests it sent."""
        flooder = subprocess.Popen([sys.executable, "-c", FLOODER, self.env.sock],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert flooder.stdout.readline().strip() == "flooding"
        samples = self.status_latencies()
        flooder.stdin.close()
        flooded = [int(n) for n in flooder.stdout.readline().split()]
        flooder.wait(timeout=60)
        return samples, flooded


# The flooding client: pipelines query-devices, 100 at a time, reading the
# replies on the side, until its standard input closes; prints how many it
# sent and how many were answered meanwhile.
FLOODER = r"""
import json, socket, sys, threading
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b'{"execute": "qmp_capabilities"}\n')
batch = b"".join(json.dumps({"execute": "query-devices", "id": i}).encode() + b"\n"
                 for i in range(100))
stop = threading.Event()
sent = 0

def write():
    global sent
    while not stop.is_set():
        s.sendall(batch)
        sent += 100

answered = 0

def read():
    global answered
    f = s.makefile("rb")
    for line in f:
        # Replies to query-devices: not the greeting, qmp_capabilities'
        # reply or an event.
        if "id" in json.loads(line):
            answered += 1
threading.Thread(target=read, daemon=True).start()
threading.Thread(target=write, daemon=True).start()
print("flooding", flush=True)
sys.stdin.read()
stop.set()
print(sent, answered, flush=True)
"""


def percentile(sorted_samples, p):
    return round(sorted_samples[max(0, -(-len(sorted_samples) * p // 100) - 1)], 2)


def idle_rss(env):
    """hostdevd's RSS once idle: a sweep tick (every 100 ms here) has given
    back what its threads freed (hddTrim)."""
    time.sleep(1)
    return daemon_test.status_kb(env.daemon.pid, "VmRSS")


def soak(env):
    ops = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("HD_BENCH_OPS", 10000))
    out_dir = os.path.join(daemon_test.BUILD, "bench")
    env.start_daemon("--handshake-timeout", "2", "--log-level", "warning")
    s = Soak(env, seed=int(os.environ.get("HD_BENCH_SEED", "14")))
    s.idle = []
    for dom in DOMAINS:
        s.c.execute("define-domain", name=dom)
        s.start_qemu(dom)

    start = time.monotonic()
    for _ in range(WARMUP):
        s.step()
    s.quiesce()
    rss_before = idle_rss(env)
    for i in range(ops):
        s.step()
        if (i + 1) % 1000 == 0:
            print(f"# {i + 1} operations, {time.monotonic() - start:.0f} s, "
                  f"RSS {daemon_test.status_kb(env.daemon.pid, 'VmRSS')} KiB", flush=True)
    s.quiesce()
    for sock in s.idle:
        sock.close()
    wait_for(lambda: s.c.execute("query-status")["clients"] == 1, "only the soak's client")
    rss_after = idle_rss(env)
    soak_s = time.monotonic() - start
    quiet = s.status_latencies()
    samples, flooded = s.flood()
    violations = env.violations()

    result = {
        "ops": ops, "warmup_ops": WARMUP, "seconds": round(soak_s, 1),
        "rss_before_kb": rss_before, "rss_after_kb": rss_after,
        "rss_growth_kb": rss_after - rss_before,
        "flood_status_p99_ms": percentile(samples, 99),
        "flood_status_p50_ms": percentile(samples, 50),
        "flood_status_max_ms": round(samples[-1], 2),
        "flood_status_samples": len(samples),
        # Sent (some still in the socket, held back by flow control), and
        # answered while status was measured.
        "flood_requests": flooded[0], "flood_answered": flooded[1],
        # The same measure without the flood: what the machine's load
        # alone costs.
        "quiet_status_p99_ms": percentile(quiet, 99),
        "quiet_status_p50_ms": percentile(quiet, 50),
        "load_average": os.getloadavg()[0],
        "violations": violations, "unexpected": len(s.unexpected),
        "outcomes": dict(sorted(s.counts.items())),
    }
    with open(os.path.join(out_dir, "soak.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"{ops} operations (+{WARMUP} warm-up) in {soak_s:.0f} s")
    print(f"hostdevd RSS {rss_before} KiB before, {rss_after} KiB after: "
          f"{rss_after - rss_before:+d} KiB (target < 1024)")
    print(f"status during a flood of {flooded[0]} pipelined requests ({flooded[1]} answered "
          f"meanwhile): p50 "
          f"{result['flood_status_p50_ms']} ms, p99 {result['flood_status_p99_ms']} ms "
          f"(target < 100), max {result['flood_status_max_ms']} ms; without the flood: "
          f"p50 {result['quiet_status_p50_ms']} ms, p99 {result['quiet_status_p99_ms']} ms "
          f"(load average {result['load_average']:.1f})")
    for line in s.unexpected[:20]:
        print(f"unexpected: {line}")
    check(not s.unexpected, f"no request got an error it did not deserve "
          f"({len(s.unexpected)})")
    check(violations == 0 and env.drivers() == s.orig,
          "every device on its driver, no viability violation")
    check(env.stop_daemon() == 0, "hostdevd exits cleanly")


def main():
    # Written where the results go, before run() starts the simulated host.
    out_dir = os.path.join(daemon_test.BUILD, "bench")
    os.makedirs(out_dir, exist_ok=True)
    daemon_test.TOPOLOGY = scaled_topology(out_dir)
    return daemon_test.run(soak)


if __name__ == "__main__":
    sys.exit(main())
