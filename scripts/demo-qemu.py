#!/usr/bin/env python3
"""Stand-in for the guest's QEMU in make demo: holds every group given on
the command line open, and closes one when told "close N" on the control
FIFO (the last device of group N was unplugged).  SIGTERM ends it."""
import os, sys
fds = {os.path.basename(n): os.open(n, os.O_RDWR) for n in sys.argv[2:]}
# "close N": the last device of group N was unplugged (QEMU closes the group).
with open(sys.argv[1]) as ctl:
    for line in ctl:
        words = line.split()
        if len(words) == 2 and words[0] == "close" and words[1] in fds:
            os.close(fds.pop(words[1]))
