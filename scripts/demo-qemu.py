#!/usr/bin/env python3
"""Stand-in for a guest's QEMU (make demo, tests/daemon): a QMP server that
holds VFIO groups the way QEMU does.

    demo-qemu.py --socket PATH --root ROOT [--q35-ports N] [--unplug-delay-ms N]
                 [ALIAS=ADDRESS ...]

Each ALIAS=ADDRESS is a passed-through device; the IOMMU group of ADDRESS
(ROOT/sys/bus/pci/devices/ADDRESS/iommu_group) is opened once for all its
devices (ROOT/dev/vfio/N), as QEMU does.  On the monitor:

  device_add {"driver": "vfio-pci", "host": ADDRESS, "id": ALIAS}
      opens the device's group if this QEMU did not hold it yet; with
      --q35-ports N the machine is a q35 with N empty pcie-root-ports
      named as libvirt names them (pci.1 ... pci.N): like QEMU, it refuses
      a device without "bus" (the root bus pcie.0 has no hotplug), or on
      a bus it does not have;
  device_del {"id": ALIAS}
      the guest lets the device go (at once, or --unplug-delay-ms later: a
      slow guest); then the group is closed if it was its last device
      here, *then* DEVICE_DELETED goes to every connected monitor (QEMU
      >= 2.11 sends it from the device's finalize).  While the guest has
      not let go, the device is still there and another device_del of it
      is refused, as QEMU >= 6.1 refuses it;
  qom-list {"path": "/machine/peripheral"}: the devices still there;
  x-guest-eject {"id": ALIAS}: the guest ejects the device by itself (the
      stand-in plays the guest too): deleted as above, unasked;
  query-version (8.2.0), query-qmp-schema, query-events, qmp_capabilities.

Several clients may connect one after the other or at once.  SIGUSR1: the
monitor goes away (every connection and the socket closed); SIGUSR2: it
comes back.  Prints "ready" once it listens and holds its groups; SIGTERM
ends it.
"""
import argparse
import json
import os
import selectors
import signal
import socket
import sys
import time


class FakeQemu:
    def __init__(self, root, sock_path, q35_ports=None, unplug_delay_ms=0):
        self.root = root
        self.sock_path = sock_path
        self.hotplug_buses = None if q35_ports is None else \
            {f"pci.{i}" for i in range(1, q35_ports + 1)}
        self.unplug_delay = unplug_delay_ms / 1000.0
        self.devices = {}       # alias -> group
        self.groups = {}        # group -> fd
        self.unplugs = {}       # alias -> when the guest lets it go (monotonic)
        self.clients = set()
        self.sel = selectors.DefaultSelector()
        self.listener = None
        self.monitor_gone = False
        self.monitor_back = False
        self.listen()

    def listen(self):
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        self.listener.listen(8)
        self.sel.register(self.listener, selectors.EVENT_READ, None)

    def hang_up(self):
        """The monitor goes away: every connection, and the socket."""
        for conn in list(self.clients):
            self.drop(conn)
        if self.listener:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            os.unlink(self.sock_path)

    def drop(self, conn):
        self.sel.unregister(conn)
        self.clients.discard(conn)
        conn.close()

    def group_of(self, address):
        link = os.path.join(self.root, "sys/bus/pci/devices", address, "iommu_group")
        return os.path.basename(os.readlink(link))

    def add(self, alias, address):
        if alias in self.devices:
            raise ValueError(f"Duplicate device ID '{alias}'")
        group = self.group_of(address)
        if group not in self.groups:
            self.groups[group] = os.open(os.path.join(self.root, "dev/vfio", group), os.O_RDWR)
        self.devices[alias] = group

    def check_bus(self, bus):
        if self.hotplug_buses is None:
            return
        if bus is None or bus == "pcie.0":
            raise ValueError("Bus 'pcie.0' does not support hotplugging")
        if bus not in self.hotplug_buses:
            raise ValueError(f"Bus '{bus}' not found")

    def delete(self, alias):
        """The guest let it go: close its group if it was the last device
        of it, then DEVICE_DELETED to every monitor connected now."""
        self.unplugs.pop(alias, None)
        group = self.devices.pop(alias)
        if group not in self.devices.values():
            os.close(self.groups.pop(group))
        for conn in list(self.clients):
            self.event(conn, "DEVICE_DELETED",
                       {"device": alias, "path": f"/machine/peripheral/{alias}"})

    def send(self, conn, msg):
        try:
            conn.sendall((json.dumps(msg) + "\n").encode())
        except OSError:
            pass

    def event(self, conn, name, data):
        now = time.time()
        self.send(conn, {"event": name, "data": data,
                         "timestamp": {"seconds": int(now),
                                       "microseconds": int(now * 1e6) % 1000000}})

    def device_del(self, args):
        alias = args.get("id")
        if alias not in self.devices:
            return {"error": {"class": "DeviceNotFound", "desc": f"Device '{alias}' not found"}}
        if alias in self.unplugs:
            return {"error": {"class": "GenericError",
                              "desc": f"Device {alias} is already in the process of unplug"}}
        self.unplugs[alias] = time.monotonic() + self.unplug_delay
        return {"return": {}}

    def command(self, conn, req):
        name = req.get("execute")
        args = req.get("arguments", {})
        reply = {"return": {}}
        if name in ("qmp_capabilities", "cont", "stop"):
            pass
        elif name == "query-version":
            reply["return"] = {"qemu": {"major": 8, "minor": 2, "micro": 0},
                               "package": "hostdev demo"}
        elif name == "query-qmp-schema":
            reply["return"] = [{"name": "DEVICE_DELETED", "meta-type": "event",
                                "arg-type": "0"}]
        elif name == "query-events":
            reply["return"] = [{"name": "DEVICE_DELETED"}]
        elif name == "qom-list" and args.get("path") == "/machine/peripheral":
            reply["return"] = [{"name": "type", "type": "string"}] + \
                [{"name": a, "type": "child<vfio-pci>"} for a in sorted(self.devices)]
        elif name == "device_add":
            try:
                self.check_bus(args.get("bus"))
                self.add(args["id"], args["host"])
            except (KeyError, OSError, ValueError) as e:
                reply = {"error": {"class": "GenericError", "desc": str(e)}}
        elif name == "device_del":
            reply = self.device_del(args)
        elif name == "x-guest-eject" and args.get("id") in self.devices:
            self.unplugs[args["id"]] = time.monotonic()
        else:
            reply = {"error": {"class": "CommandNotFound",
                               "desc": f"The command {name} has not been found"}}
        if "id" in req:
            reply["id"] = req["id"]
        self.send(conn, reply)

    def accept(self):
        conn, _ = self.listener.accept()
        self.sel.register(conn, selectors.EVENT_READ, bytearray())
        self.clients.add(conn)
        self.send(conn, {"QMP": {"version": {"qemu": {"major": 8, "minor": 2, "micro": 0},
                                             "package": "hostdev demo"},
                                 "capabilities": []}})

    def read(self, conn, buf):
        try:
            data = conn.recv(65536)
        except OSError:
            # A client that left with the greeting unread.
            data = b""
        if not data:
            self.drop(conn)
            return
        buf.extend(data)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except ValueError:
                self.send(conn, {"error": {"class": "GenericError",
                                           "desc": "JSON parse error"}})
                continue
            self.command(conn, req)

    def run(self):
        print("ready", flush=True)
        while True:
            if self.monitor_gone:
                self.monitor_gone = False
                self.hang_up()
            if self.monitor_back:
                self.monitor_back = False
                if not self.listener:
                    self.listen()
            now = time.monotonic()
            for alias in [a for a, when in self.unplugs.items() if when <= now]:
                self.delete(alias)
            wait = min([when - now for when in self.unplugs.values()] + [0.1])
            for key, _ in self.sel.select(timeout=max(wait, 0)):
                if key.data is None:
                    self.accept()
                else:
                    self.read(key.fileobj, key.data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--q35-ports", type=int, metavar="N")
    ap.add_argument("--unplug-delay-ms", type=int, default=0, metavar="N")
    ap.add_argument("devices", nargs="*", metavar="ALIAS=ADDRESS")
    opts = ap.parse_args()
    qemu = FakeQemu(opts.root, opts.socket, opts.q35_ports, opts.unplug_delay_ms)

    def gone(*_):
        qemu.monitor_gone = True

    def back(*_):
        qemu.monitor_back = True
    signal.signal(signal.SIGUSR1, gone)
    signal.signal(signal.SIGUSR2, back)
    for spec in opts.devices:
        alias, _, address = spec.partition("=")
        qemu.add(alias, address)
    qemu.run()


if __name__ == "__main__":
    sys.exit(main())
