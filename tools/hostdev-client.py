#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A minimal hostdevd client (standard library only; docs/protocol.rst).

Copy it into a management stack, or run it:

    hostdev-client.py [--socket PATH] COMMAND ['{"arg": "value"}']
    hostdev-client.py [--socket PATH] --events N

prints the command's "return" as JSON (exit 0), or its error (exit 1).
"""
import argparse
import itertools
import json
import socket
import sys

DEFAULT_SOCKET = "/run/hostdevd.sock"


class HostdevError(Exception):
    def __init__(self, klass, desc):
        super().__init__(f"{klass}: {desc}")
        self.klass = klass
        self.desc = desc


class HostdevClient:
    """One connection: greeting read, capabilities negotiated."""

    def __init__(self, path=DEFAULT_SOCKET, timeout=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.ids = itertools.count(1)
        self.events = []            # events received while waiting for replies
        self.greeting = self._read()
        if "error" in self.greeting:
            raise HostdevError(self.greeting["error"]["class"], self.greeting["error"]["desc"])
        self.execute("qmp_capabilities")

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("hostdevd closed the connection")
        return json.loads(line)

    def send_raw(self, data):
        """Send bytes as they are (for tests of bad input)."""
        self.sock.sendall(data)

    def execute(self, command, **arguments):
        """Run COMMAND (arguments named with _ for -) and return its "return"."""
        req_id = next(self.ids)
        req = {"execute": command, "id": req_id}
        if arguments:
            req["arguments"] = {k.replace("_", "-"): v for k, v in arguments.items()}
        self.sock.sendall((json.dumps(req) + "\n").encode())
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
            elif msg.get("id", req_id) == req_id:
                if "error" in msg:
                    raise HostdevError(msg["error"]["class"], msg["error"]["desc"])
                return msg["return"]

    def next_event(self):
        """The next event (blocking)."""
        if self.events:
            return self.events.pop(0)
        while True:
            msg = self._read()
            if "event" in msg:
                return msg

    def close(self):
        self.file.close()
        self.sock.close()


def main():
    ap = argparse.ArgumentParser(description="hostdevd client")
    ap.add_argument("--socket", default=DEFAULT_SOCKET)
    ap.add_argument("--events", type=int, metavar="N", help="print N events and exit")
    ap.add_argument("command", nargs="?")
    ap.add_argument("arguments", nargs="?", default="{}")
    opts = ap.parse_args()
    try:
        client = HostdevClient(opts.socket)
        if opts.events:
            for _ in range(opts.events):
                print(json.dumps(client.next_event()), flush=True)
            return 0
        if not opts.command:
            ap.error("a COMMAND or --events is needed")
        args = json.loads(opts.arguments)
        ret = client.execute(opts.command, **{k.replace("-", "_"): v for k, v in args.items()})
        print(json.dumps(ret, indent=2))
        return 0
    except (HostdevError, OSError, ValueError) as e:
        print(f"hostdev-client: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
