#!/bin/sh
# exe_wrapper of the `valgrind` test setup (tests/meson.build): runs a test
# program under valgrind, except the test cases listed here, each with the
# reason it cannot run there (docs/stress.rst).  Valgrind 3.19 (Debian 12)
# does not implement pidfd_open(2) and pidfd_getfd(2), and slows programs
# down about 20 times.
prog=$1
shift
skip=""
case $(basename "$prog") in
    test-qmp)
        # 16 MiB through the QMP client exceeds the 5 s answer timeout.
        skip="-s /qmp/huge-message" ;;
    test-simhost)
        # Its forked child exits on purpose with its simulated host still
        # running: valgrind checks the child's leaks too.
        skip="-s /simhost/shutdown/die-with-parent" ;;
    test-release)
        # Waits for a holder's exit through its pidfd, polling off.
        skip="-s /release/exit-wakes" ;;
    test-destroy|bench-*)
        echo "SKIP: destroy needs pidfd_open(2), which valgrind does not implement"
        exit 77 ;;
esac
supp=$(dirname "$0")/valgrind.supp
# shellcheck disable=SC2086
exec valgrind --quiet --leak-check=full --error-exitcode=1 \
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    --suppressions="$supp" --num-callers=30 "$prog" $skip "$@"
