#!/usr/bin/env bash
# Run every fuzz target (or those named) for SECONDS each and print a
# summary line per target: executions, crashes.
#
#   tests/fuzz/run-fuzzers.sh BUILD_DIR SECONDS [TARGET...]
#
# BUILD_DIR is a clang build with -Dfuzzing=true (docs/stress.rst).  Each
# target starts from its seed corpus (tests/fuzz/corpus/TARGET, never
# written to) plus what earlier runs found (BUILD_DIR/fuzz-work/TARGET);
# a crash leaves its input in BUILD_DIR/fuzz-work/crash-TARGET-*: add it
# to the seed corpus as a regression test once fixed.
set -uo pipefail

build=${1:?usage: run-fuzzers.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: run-fuzzers.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pciaddr domainxml state qmp-client qmp-command)
work="$build/fuzz-work"
failed=0

for t in "${targets[@]}"; do
    bin="$build/tests/fuzz/fuzz-$t"
    if [ ! -x "$bin" ]; then
        echo "run-fuzzers: $bin missing (meson setup with CC=clang -Dfuzzing=true)" >&2
        exit 2
    fi
    mkdir -p "$work/$t"
    log="$work/$t.log"
    # -rss_limit_mb: ASan's shadow counts; -max_len: the QMP target
    # ignores inputs above 64 KiB anyway.
    "$bin" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$work/crash-$t-" "$work/$t" "$here/corpus/$t" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(ls "$work"/crash-"$t"-* 2>/dev/null | wc -l)
    echo "fuzz-$t: ${runs:-0} executions in ${seconds} s, exit $rc, $crashes crash inputs"
    [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ] || failed=1
done
exit $failed
