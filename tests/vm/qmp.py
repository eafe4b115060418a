#!/usr/bin/env python3
"""A minimal QMP client for VM tier scenarios (nested QEMU).

    qmp.py SOCKET COMMAND [ARGUMENTS_JSON] [--wait-event NAME] [--timeout S]

Connects to QEMU's QMP unix socket, negotiates capabilities, runs COMMAND
with ARGUMENTS_JSON and prints its "return" as JSON on one line.  With
--wait-event it then waits for the event NAME and prints
"event NAME SECONDS_AFTER_THE_COMMAND_RETURNED DATA_JSON".  Exit status:
0, 1 when QEMU answers with an error (printed as "error CLASS DESC"), 2 on
a timeout or a lost connection.
"""
import argparse
import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.read()  # greeting
        self.command("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name, arguments=None):
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self.read()
            if "event" in reply:
                self.events.append((time.monotonic(), reply))
                continue
            return reply

    def wait_event(self, name, deadline):
        while True:
            for when, event in self.events:
                if event["event"] == name:
                    return when, event
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            reply = self.read()
            if "event" in reply:
                self.events.append((time.monotonic(), reply))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("command")
    parser.add_argument("arguments", nargs="?", default=None)
    parser.add_argument("--wait-event")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    deadline = time.monotonic() + args.timeout
    try:
        qmp = Qmp(args.socket, args.timeout)
        reply = qmp.command(args.command,
                            json.loads(args.arguments) if args.arguments else None)
        returned = time.monotonic()
        if "error" in reply:
            print("error %s %s" % (reply["error"].get("class"), reply["error"].get("desc")))
            return 1
        print(json.dumps(reply.get("return")))
        sys.stdout.flush()
        if args.wait_event:
            when, event = qmp.wait_event(args.wait_event, deadline)
            print("event %s %.3f %s" % (args.wait_event, when - returned,
                                        json.dumps(event.get("data", {}))))
    except (OSError, ConnectionError) as err:
        print("error connection %s" % err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
