#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end: hostdevctl (and the Python client) against hostdevd on the
simulated host.

    test-daemon.py verbs|bad-input|protocol|restart|pending

Each case mounts its own simulated gpu16 host, runs its own hostdevd and,
when needed, a stand-in QEMU (scripts/demo-qemu.py).  Needs root and
/dev/fuse: otherwise exits 77 with the reason.  Runs in a private mount
namespace, so a failed run leaves no mount behind.
"""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import socket
import tempfile
import time

SRC = os.environ.get("HD_SRCDIR", os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("HD_BUILDDIR", "build")
SIMHOST = os.environ.get("HD_SIMHOST", "")
RTNL_PRELOAD = os.environ.get("HD_SIM_RTNL_PRELOAD", "")
HOSTDEVD = os.path.join(BUILD, "src/daemon/hostdevd")
HOSTDEVCTL = os.path.join(BUILD, "src/cli/hostdevctl")
MGR_TOOL = os.path.join(BUILD, "tests/manager/mgr-tool")
FAKE_QEMU = os.path.join(SRC, "scripts/demo-qemu.py")
TOPOLOGY = os.path.join(SRC, "tests/sim/topologies/gpu16.json")
sys.path.insert(0, os.path.join(SRC, "tools"))
client_mod = __import__("hostdev-client")

GPU = "0000:11:00.0"
AUDIO = "0000:11:00.1"
GPU2 = "0000:12:00.0"
AUDIO2 = "0000:12:00.1"


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok - {what}", flush=True)


def wait_for(cond, what, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


def hostdev_xml(addrs, name=None, aliases=True, guest_bus=None):
    """guest_bus: the guest-side PCI bus of the first device, one per device."""
    out = []
    if name is not None:
        out.append(f"<domain><name>{name}</name><devices>")
    for i, addr in enumerate(addrs):
        d, b, sf = addr.split(":")
        s, f = sf.split(".")
        alias = f"<alias name='{alias_of(addr)}'/>" if aliases else ""
        guest = "" if guest_bus is None else \
            f"<address type='pci' domain='0x0000' bus='0x{guest_bus + i:02x}' slot='0x00'/>"
        out.append("<hostdev mode='subsystem' type='pci' managed='yes'><driver name='vfio'/>"
                   f"<source><address domain='0x{d}' bus='0x{b}' slot='0x{s}' "
                   f"function='0x{f}'/></source>{alias}{guest}</hostdev>")
    if name is not None:
        out.append("</devices></domain>")
    return "\n".join(out)


def alias_of(addr):
    return "hd-" + addr.replace(":", "-").replace(".", "-")


def status_kb(pid, field):
    """A size from /proc/PID/status (VmRSS, VmHWM...), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def as_user(uid, gid):
    """A preexec_fn: the child runs as @uid and @gid, with no other group."""
    def drop():
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    return drop


class Env:
    """A simulated host, a hostdevd on it, and the processes around them."""

    def __init__(self):
        self.work = tempfile.mkdtemp(prefix="hostdevd-test.")
        self.root = os.path.join(self.work, "host")
        self.state = os.path.join(self.work, "state")
        self.sock = os.path.join(self.work, "hostdevd.sock")
        self.log = os.path.join(self.work, "hostdevd.log")
        os.mkdir(self.root)
        os.chmod(self.work, 0o755)      # clients with other uids reach the socket
        self.procs = []
        self.daemon = None
        self.rtnl = os.path.join(self.work, "rtnl.sock")
        self.sim = subprocess.Popen([SIMHOST, "--topology", TOPOLOGY, "--die-with-parent",
                                     "--rtnl-socket", self.rtnl, self.root])
        wait_for(lambda: os.path.exists(os.path.join(self.root, ".sim/state")),
                 "the simulated host")

    def start_daemon(self, *extra):
        self.daemon = subprocess.Popen([HOSTDEVD, "--foreground", "--root", self.root,
                                        "--state-dir", self.state, "--socket", self.sock,
                                        "--log-level", "info", "--sweep-ms", "100", *extra],
                                       stderr=open(self.log, "a"), env=self.daemon_env())

        def up():
            try:
                self.client().close()
                return True
            except OSError:
                assert self.daemon.poll() is None, "hostdevd exited:\n" + open(self.log).read()
                return False
        wait_for(up, "hostdevd")

    def daemon_env(self):
        """hostdevd's rtnetlink goes to the simulated host (docs/simhost.rst):
        the VF code runs as on a real host."""
        env = dict(os.environ)
        if RTNL_PRELOAD:
            env["LD_PRELOAD"] = RTNL_PRELOAD
            env["HD_SIM_RTNL"] = self.rtnl
        return env

    def stop_daemon(self, sig=signal.SIGTERM):
        self.daemon.send_signal(sig)
        rc = self.daemon.wait(timeout=30)
        self.daemon = None
        return rc

    def client(self):
        return client_mod.HostdevClient(self.sock, timeout=60)

    def ctl(self, *args, expect=0, tool=HOSTDEVCTL, timeout=120, **kw):
        p = subprocess.run([tool, "--socket", self.sock, *args], capture_output=True,
                           text=True, timeout=timeout, **kw)
        if expect is not None and p.returncode != expect:
            raise AssertionError(f"hostdevctl {' '.join(args)}: exit {p.returncode}, "
                                 f"expected {expect}\n{p.stdout}{p.stderr}")
        return p

    def user_ctl(self, uid, *args, expect=0, gid=None):
        """hostdevctl run as @uid (group @gid, default the same number), from a
        copy that uid may execute: the build directory may lie under one only
        root can enter (a clone in a mktemp -d directory)."""
        ctl = os.path.join(self.work, "hostdevctl")
        if not os.path.exists(ctl):
            shutil.copy(HOSTDEVCTL, ctl)
            os.chmod(ctl, 0o755)
        return self.ctl(*args, expect=expect, tool=ctl,
                        preexec_fn=as_user(uid, uid if gid is None else gid))

    def write(self, name, text):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def state_json(self, name):
        """A file of hostdevd's state directory, None if there is none."""
        try:
            with open(os.path.join(self.state, name)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def security_records(self):
        return (self.state_json("security.json") or {"records": []})["records"]

    def sim_state(self):
        with open(os.path.join(self.root, ".sim/state")) as f:
            return json.load(f)

    def driver(self, addr):
        return next(d["driver"] for d in self.sim_state()["devices"] if d["address"] == addr)

    def drivers(self):
        return {d["address"]: d["driver"] for d in self.sim_state()["devices"]}

    def violations(self):
        return self.sim_state()["violations"]

    def group_of(self, addr):
        return os.path.basename(os.readlink(
            os.path.join(self.root, "sys/bus/pci/devices", addr, "iommu_group")))

    def start_qemu(self, addrs, *extra, qmp="qemu.qmp"):
        qmp = os.path.join(self.work, qmp)
        p = subprocess.Popen([sys.executable, FAKE_QEMU, "--socket", qmp, "--root", self.root,
                              *extra, *[f"{alias_of(a)}={a}" for a in addrs]],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        self.procs.append(p)
        return p, qmp

    def domain(self, name):
        return next(d for d in json.loads(self.ctl("--json", "domains").stdout)
                    if d["name"] == name)

    def state_of(self, addr):
        ret = json.loads(self.ctl("--json", "list").stdout)
        for grp in ret["groups"]:
            for dev in grp["devices"]:
                if dev["address"] == addr:
                    return dev
        raise KeyError(addr)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if self.daemon:
            self.daemon.kill()
            self.daemon.wait()
        self.sim.terminate()
        try:
            self.sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.sim.kill()
        subprocess.run(["umount", "-l", self.root], stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", self.work])


def case_verbs(env):
    """Every verb, the way a user would run it."""
    env.start_daemon()
    orig = env.drivers()

    # list, status, domains
    out = env.ctl("list").stdout
    check(f"IOMMU group {env.group_of(GPU)}" in out and GPU in out and "nvidia" in out,
          "list shows groups, devices and drivers")
    check(json.loads(env.ctl("--json", "status").stdout)["tracked-devices"] == 0,
          "status --json: nothing tracked")
    check(env.ctl("list", "--help").returncode == 0, "--help per verb")

    # nodedev-*
    out = env.ctl("nodedev-detach", AUDIO).stdout
    check(env.driver(AUDIO) == "vfio-pci" and GPU in out,
          "nodedev-detach binds vfio-pci and names the sibling on a host driver")
    check(env.state_of(AUDIO)["state"] == "inactive", "the detached device is inactive")
    env.ctl("nodedev-reset", AUDIO)
    check(True, "nodedev-reset")
    env.ctl("nodedev-reattach", AUDIO)
    check(env.driver(AUDIO) == "snd_hda_intel", "nodedev-reattach gives it back")

    # define + prepare before QEMU starts
    env.ctl("define", "guest")
    xml = env.write("guest.xml", hostdev_xml([GPU, AUDIO, GPU2, AUDIO2], name="guest"))
    env.ctl("prepare", "guest", xml)
    check(all(env.driver(a) == "vfio-pci" for a in (GPU, AUDIO, GPU2, AUDIO2)),
          "prepare assigns 4 functions")
    check(env.state_of(GPU)["domain"] == "guest", "list shows the owner")

    # QEMU starts; the domain learns its monitor and pid
    qemu, qmp = env.start_qemu([GPU, AUDIO, GPU2, AUDIO2])
    env.ctl("define", "guest", "--qmp", qmp, "--pid", str(qemu.pid))
    doms = json.loads(env.ctl("--json", "domains").stdout)
    check(doms[0]["pid"] == qemu.pid and len(doms[0]["devices"]) == 4,
          "domains shows the guest with its 4 devices")

    # events, in the background from here on
    events = subprocess.Popen([HOSTDEVCTL, "--socket", env.sock, "--json", "events",
                               "--timeout", "60"], stdout=subprocess.PIPE, text=True)
    env.procs.append(events)
    time.sleep(0.3)

    # detach-device: the audio function waits on the inactive list
    out = env.ctl("detach-device", "guest", env.write("audio.xml", hostdev_xml([AUDIO]))).stdout
    check(env.driver(AUDIO) == "vfio-pci" and env.state_of(AUDIO)["state"] == "inactive",
          "detach-device of the audio function: it waits on the inactive list")
    check("1 released, 0 group(s) given back, 1 device(s) waiting on the inactive list" in out,
          "detach-device counts the device it left on the inactive list")
    # the GPU without an alias in the XML: the one recorded at prepare is used
    out = env.ctl("detach-device", "guest",
                  env.write("gpu.xml", hostdev_xml([GPU], aliases=False))).stdout
    check(env.driver(GPU) == "nvidia" and env.driver(AUDIO) == "snd_hda_intel",
          "detach-device of the GPU: the group is given back")
    check("1 group(s) given back, 0 device(s) waiting" in out,
          "detach-device says the group went back, nothing waits")

    # attach-device: hot-plug a whole group
    env.ctl("attach-device", "guest", env.write("att.xml", hostdev_xml([GPU, AUDIO],
                                                                        name="guest")))
    check(env.state_of(GPU)["domain"] == "guest" and env.driver(GPU) == "vfio-pci",
          "attach-device assigns the devices and QEMU takes them")

    # destroy: everything goes home, with progress
    p = env.ctl("destroy", "guest")
    check("4/4 devices given back" in p.stdout and "devices given back" in p.stderr,
          "destroy reports every device given back, with a progress bar")
    qemu.wait(timeout=10)
    check(env.drivers() == orig, "every device is on its original driver")

    # A q35 guest hot-plugs on its root ports only: the guest <address>
    # names the port (bus N is libvirt's pci.N).
    qemu, qmp = env.start_qemu([], "--q35-ports", "2")
    env.ctl("define", "guest", "--qmp", qmp, "--pid", str(qemu.pid))
    p = env.ctl("attach-device", "guest",
                env.write("q35.xml", hostdev_xml([GPU, AUDIO], name="guest")), expect=1)
    check("does not support hotplugging" in p.stderr and env.drivers() == orig,
          "q35: attach-device without a guest <address> is refused, the devices go home")
    env.ctl("attach-device", "guest",
            env.write("q35.xml", hostdev_xml([GPU, AUDIO], name="guest", guest_bus=1)))
    check(env.state_of(GPU)["domain"] == "guest" and env.state_of(AUDIO)["domain"] == "guest",
          "q35: attach-device on the root ports the guest <address> names")
    env.ctl("destroy", "guest")
    qemu.wait(timeout=10)
    check(env.drivers() == orig, "q35: destroyed, every device home")

    # the events client saw it all
    time.sleep(0.3)
    events.send_signal(signal.SIGINT)
    seen = [json.loads(line)["event"] for line in events.communicate(timeout=10)[0].split("\n")
            if line.strip()]
    check({"DEVICE_ASSIGNED", "DEVICE_RELEASED", "GROUP_GIVEN_BACK", "DESTROY_PROGRESS"}
          <= set(seen), "events: assigned, released, group given back, destroy progress")

    env.ctl("undefine", "guest")
    check(json.loads(env.ctl("--json", "domains").stdout) == [], "undefine")
    check(env.violations() == 0, "no viability violation")
    check(env.stop_daemon() == 0, "hostdevd exits cleanly on SIGTERM")


def case_bad_input(env):
    """Wrong requests get an error and change nothing."""
    env.start_daemon()
    env.ctl("define", "guest")
    env.ctl("define", "other")
    env.ctl("prepare", "guest", env.write("g.xml", hostdev_xml([GPU, AUDIO], name="guest")))
    qemu, qmp = env.start_qemu([GPU, AUDIO])
    env.ctl("define", "guest", "--qmp", qmp, "--pid", str(qemu.pid))
    env.ctl("define", "other", "--qmp", qmp)
    before = env.drivers()
    status = json.loads(env.ctl("--json", "status").stdout)

    bad = env.write("bad.xml", "<domain><name>guest</name><devices><hostdev")
    env.ctl("prepare", "guest", bad, expect=4)
    check(True, "malformed XML: exit 4")
    env.ctl("prepare", "guest", env.write("noaddr.xml", "<hostdev type='pci'/>"), expect=4)
    check(True, "a hostdev without an address: exit 4")
    env.ctl("prepare", "nobody", env.write("g2.xml", hostdev_xml([GPU2, AUDIO2])), expect=5)
    check(True, "unknown domain: exit 5")
    env.ctl("destroy", "nobody", expect=5)
    env.ctl("detach-device", "nobody", env.write("a.xml", hostdev_xml([AUDIO])), expect=5)
    check(True, "destroy / detach-device of an unknown domain: exit 5")
    env.ctl("prepare", "other", env.write("o.xml", hostdev_xml([GPU, AUDIO], name="other")),
            expect=6)
    check(True, "prepare of a device another domain has: exit 6")
    env.ctl("detach-device", "other", env.write("a2.xml", hostdev_xml([AUDIO])), expect=6)
    check(True, "detach-device of a device of another domain: exit 6")
    env.ctl("detach-device", "guest", env.write("a3.xml", hostdev_xml([GPU2])), expect=5)
    check(True, "detach-device of a device the domain does not have: exit 5")
    env.ctl("prepare", "guest", env.write("g3.xml", hostdev_xml([GPU2], name="guest")),
            expect=6)
    check(True, "prepare that would make a group non-viable: exit 6")
    env.ctl("nodedev-detach", "0000:11:00", expect=4)
    env.ctl("nodedev-detach", "0000:77:00.0", expect=5)
    env.ctl("nodedev-reattach", GPU, expect=6)
    check(True, "nodedev-*: bad address 4, no device 5, device in use 6")
    env.ctl("define", "bad/name", expect=4)
    env.ctl("define", "x", "--qmp", "relative.sock", expect=4)
    # Above the largest pid_max Linux allows (2^22): no such process.
    out = env.ctl("define", "x", "--pid", str(2**22 + 1), expect=4)
    check("no process with pid" in out.stderr, "define: a pid no process has is named")
    check(True, "define: invalid name, QMP path or pid: exit 4")
    env.ctl("nope", expect=2)
    env.ctl("destroy", expect=2)
    env.ctl("prepare", "guest", "/nonexistent.xml", expect=2)
    check(True, "usage errors: exit 2")
    big = env.write("big.xml", "<!--" + "x" * (2 * 1024 * 1024) + "-->")
    env.ctl("prepare", "guest", big, expect=2)
    check(True, "an XML file over 1 MiB is refused by hostdevctl: exit 2")

    check(env.drivers() == before, "nothing changed on the host")
    after = json.loads(env.ctl("--json", "status").stdout)
    check(after["tracked-devices"] == status["tracked-devices"], "nothing changed in hostdevd")
    check(env.state_of(AUDIO)["domain"] == "guest", "the guest still has its devices")

    # A client that is not allowed: uid 65534 reaching the socket with
    # fsuid 0 (setfsuid does not survive exec, so the client is this
    # process, forked), so that only the SO_PEERCRED check stands in its way.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            os.setgroups([])
            os.setresgid(65534, 65534, 0)
            os.setresuid(65534, 65534, 0)
            libc.setfsuid(0)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(env.sock)
            s.sendall(b'{"execute": "qmp_capabilities"}\n{"execute": "query-status"}\n')
            os.write(w, s.makefile("rb").read())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read().decode().splitlines()
    os.waitpid(pid, 0)
    check(len(said) == 1 and json.loads(said[0])["error"]["class"] == "PermissionDenied",
          "a client with another uid is refused (SO_PEERCRED) and hung up on")
    # And the socket itself: 0600 root.
    st = os.stat(env.sock)
    check(st.st_mode & 0o777 == 0o600 and st.st_uid == 0, "the socket is 0600 root")

    env.ctl("destroy", "guest")
    check(env.drivers() == {**before, GPU: "nvidia", AUDIO: "snd_hda_intel"},
          "destroy after all that")
    check(env.violations() == 0, "no viability violation")


def case_protocol(env):
    """The protocol itself, through the Python client of docs/protocol.rst."""
    env.start_daemon()

    p = subprocess.run([sys.executable, os.path.join(SRC, "tools/hostdev-client.py"),
                        "--socket", env.sock, "query-status"], capture_output=True, text=True,
                       timeout=30)
    check(p.returncode == 0 and json.loads(p.stdout)["tracked-devices"] == 0,
          "tools/hostdev-client.py query-status")
    p = subprocess.run([sys.executable, os.path.join(SRC, "tools/hostdev-client.py"),
                        "--socket", env.sock, "define-domain", '{"name": "py"}'],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "tools/hostdev-client.py define-domain")

    c = env.client()
    check(c.greeting["QMP"]["version"]["package"].startswith("hostdevd"), "greeting")
    for bad, what in [
        ({"execute": "query-status", "arguments": {"x": 1}}, "an unknown argument"),
        ({"execute": "define-domain", "arguments": {"name": 5}}, "an argument of the wrong type"),
        ({"execute": "define-domain"}, "a missing argument"),
        ({"execute": "no-such-command"}, "an unknown command"),
        ({"execute": "qmp_capabilities"}, "negotiating twice"),
        ({"execute": "query-status", "extra": 1}, "an unknown member"),
        ({"arguments": {}}, "no execute"),
    ]:
        c.send_raw((json.dumps(dict(bad, id="t")) + "\n").encode())
        reply = c._read()
        check("error" in reply and reply.get("id") == "t", f"error reply for {what}")
    c.send_raw(b"this is not json\n")
    check("error" in c._read(), "error reply for a line that is not JSON")
    check(c.execute("query-status")["domains"] == 1, "the connection still works")

    try:
        c.execute("destroy", domain="nobody")
        check(False, "destroy of an unknown domain fails")
    except client_mod.HostdevError as e:
        check(e.klass == "NotFound", "destroy of an unknown domain: NotFound")

    # Before negotiation, only qmp_capabilities.
    s = socket.socket(socket.AF_UNIX)
    s.connect(env.sock)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b'{"execute": "query-status", "id": 1}\n')
    check(json.loads(f.readline())["error"]["class"] == "CommandNotFound",
          "commands before qmp_capabilities are refused")

    # A request over 1 MiB: error, and the connection ends.
    s.sendall(b'{"execute": "qmp_capabilities"}\n')
    f.readline()
    try:
        s.sendall(b'{"execute": "define-domain", "arguments": {"name": "'
                  + b"x" * (1100 * 1024))
    except (BrokenPipeError, ConnectionResetError):
        pass        # hostdevd hung up once it had seen enough
    reply = json.loads(f.readline())
    check("larger than" in reply["error"]["desc"], "a request over 1 MiB gets an error")
    check(f.readline() == b"", "... and the connection is closed")
    s.close()
    check(env.client().execute("query-domains") == c.execute("query-domains"),
          "hostdevd still serves, and nothing changed")
    c.close()

    # --group: the socket is 0660 root:GROUP; members may use it, others
    # cannot even connect.
    env.stop_daemon()
    env.start_daemon("--group", "nogroup")
    st = os.stat(env.sock)
    check(st.st_mode & 0o777 == 0o660 and st.st_gid == 65534, "--group: socket 0660 root:nogroup")

    env.user_ctl(65534, "status", gid=65534)
    check(True, "a member of the group is served")
    p = env.user_ctl(65534, "status", gid=65533, expect=3)
    check("Permission denied" in p.stderr, "a client outside the group cannot connect: exit 3")

    # A second daemon on the same socket refuses to start.
    p = subprocess.run([HOSTDEVD, "--foreground", "--root", env.root, "--state-dir",
                        env.work + "/state2", "--socket", env.sock], capture_output=True,
                       text=True, timeout=30)
    check(p.returncode != 0 and "another hostdevd" in p.stderr,
          "a second hostdevd on the same socket refuses to start")


def case_restart(env):
    """hostdevd killed in the middle of a destroy of 16 GPUs, then restarted."""
    env.start_daemon()
    orig = env.drivers()
    gpus = sorted(a for a, d in orig.items() if d == "nvidia")
    audios = sorted(a for a, d in orig.items() if d == "snd_hda_intel")
    env.ctl("define", "guest")
    env.ctl("prepare", "guest", env.write("g.xml", hostdev_xml(gpus + audios, name="guest")))
    qemu, qmp = env.start_qemu(gpus + audios)
    env.ctl("define", "guest", "--qmp", qmp, "--pid", str(qemu.pid))

    c = env.client()
    destroy = subprocess.Popen([HOSTDEVCTL, "--socket", env.sock, "destroy", "guest"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    env.procs.append(destroy)
    while True:
        ev = c.next_event()
        if ev["event"] == "DESTROY_PROGRESS" and ev["data"]["given-back"] > 0:
            break
    env.daemon.kill()
    env.daemon.wait()
    env.daemon = None
    done = ev["data"]["given-back"]
    check(done < len(orig) and done < 32, f"hostdevd killed with {done}/32 given back")
    check(destroy.wait(timeout=30) == 3, "the destroying hostdevctl: exit 3 (lost hostdevd)")

    env.start_daemon()

    def finished():
        st = json.loads(env.ctl("--json", "status").stdout)
        return env.drivers() == orig and st["tracked-devices"] == 0
    if json.loads(env.ctl("--json", "domains").stdout)[0]["devices"]:
        # The kill came before the devices left the domain: destroy again.
        env.ctl("destroy", "guest")
    wait_for(finished, "every group given back after the restart", timeout=60)
    check(True, "after the restart every device is on its original driver")
    check(env.violations() == 0, "no viability violation")

    # Long after a crash the recorded pid may belong to another process:
    # play that by changing the recorded start time, then destroy.
    other = subprocess.Popen(["sleep", "60"])
    env.procs.append(other)
    env.ctl("define", "reused", "--pid", str(other.pid))
    env.daemon.kill()
    env.daemon.wait()
    path = os.path.join(env.state, "hostdevd-domains.json")
    with open(path) as f:
        doms = json.load(f)
    dom = next(d for d in doms if d["name"] == "reused")
    check(dom["pid"] == other.pid and dom["pid-start"] > 0, "define records when QEMU started")
    dom["pid-start"] -= 1
    with open(path, "w") as f:
        json.dump(doms, f)
    env.start_daemon()
    env.ctl("destroy", "reused")
    check(other.poll() is None, "destroy leaves alone another process with the domain's pid")


def case_pending(env):
    """A pending group goes back as soon as it is free, not at the next sweep."""
    slow = ("--sweep-ms", "60000")
    env.start_daemon(*slow)
    orig = env.drivers()
    env.ctl("define", "guest")
    env.ctl("prepare", "guest", env.write("g.xml", hostdev_xml([GPU, AUDIO], name="guest")))
    link = os.readlink(os.path.join(env.root, "sys/bus/pci/devices", GPU, "iommu_group"))
    holder = os.open(os.path.join(env.root, "dev/vfio", os.path.basename(link)), os.O_RDWR)

    # The guest leaves while its group is held, with hostdevd stopped (the
    # manager's tool takes the state meanwhile): the restarted daemon finds
    # the group pending, and nothing of the guest's that could watch it.
    env.daemon.terminate()
    env.daemon.wait()
    subprocess.run([MGR_TOOL, env.root, env.state, "release-domain", "guest"], check=True,
                   capture_output=True)
    env.start_daemon(*slow)
    time.sleep(0.5)
    check(env.driver(GPU) == "vfio-pci" and env.state_of(GPU)["state"] == "inactive",
          "the held group waits on the inactive list")

    start = time.monotonic()
    os.close(holder)
    # The sweep runs once a minute: only the group's release watch can do this.
    wait_for(lambda: env.drivers() == orig, "the group given back once free", timeout=20)
    check(True, f"given back {time.monotonic() - start:.2f} s after the holder let go")
    check(env.violations() == 0, "no viability violation")


def run(case):
    """Run case(env) on a fresh Env in a private mount namespace: the exit
    code (77 when something needed is absent).  test-hostile.py uses it too."""
    if os.geteuid() != 0:
        skip("the simulated host and the daemon need root")
    if not os.path.exists("/dev/fuse"):
        skip("no /dev/fuse: the simulated host needs FUSE")
    if not SIMHOST or not os.access(SIMHOST, os.X_OK):
        skip("hostdev-simhost is not built (no libfuse3)")
    if not os.environ.get("HD_DAEMON_TEST_NS"):
        os.environ["HD_DAEMON_TEST_NS"] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private",
                              sys.executable, *sys.argv])
    env = Env()
    try:
        case(env)
    except Exception:
        if os.path.exists(env.log):
            print("hostdevd's log:\n" + open(env.log).read(), file=sys.stderr)
        raise
    finally:
        env.close()
    return 0


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("verbs", "bad-input", "protocol",
                                                  "restart", "pending"):
        print(__doc__, file=sys.stderr)
        return 2
    return run(globals()["case_" + sys.argv[1].replace("-", "_")])


if __name__ == "__main__":
    sys.exit(main())
