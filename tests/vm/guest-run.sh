#!/usr/bin/env bash
# Runs inside the VM (in the chroot on the test machine's root): every
# scenario listed in .vm/scenarios of the results share, one after the
# other, each in its own process group with a time limit.  After each one,
# stray processes are killed and the test devices go back to their native
# drivers, so scenarios do not see each other's leftovers.
#
# Per scenario NAME (the script's base name without .sh) the results share
# gets NAME.log (its output) and NAME.rc (its exit status); summary.txt
# gets one line "NAME RC SECONDS".  Exit status: the first failure's
# status, else 0 if any scenario passed, else 77 (all skipped).
set -euo pipefail

# shellcheck disable=SC1090
. "$HD_VM_CONF"
res=$HD_VM_RESULTS
export HD_VM=1
cd /tmp

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"

mapfile -t scenarios <"$res/.vm/scenarios"
passed=0
failed=0
first_failure=0
: >"$res/summary.txt"

for s in "${scenarios[@]}"; do
    name=$(basename "$s" .sh)
    echo "=== scenario $name ($s)"
    start=$(date +%s%N)
    set +e
    # timeout puts itself and the scenario in a new process group.
    timeout -k 5 "${HD_VM_SCENARIO_TIMEOUT:-240}" bash "$s" > >(tee "$res/$name.log") 2>&1 &
    pid=$!
    wait "$pid"
    rc=$?
    set -e
    kill -KILL -- "-$pid" 2>/dev/null || true
    secs=$(( ($(date +%s%N) - start) / 1000000 ))
    secs=$(printf '%d.%03d' $((secs / 1000)) $((secs % 1000)))
    [ "$rc" -eq 124 ] && echo "=== scenario $name timed out"
    echo "$rc" >"$res/$name.rc"
    echo "$name $rc $secs" >>"$res/summary.txt"
    echo "=== scenario $name: exit $rc after $secs s"
    case $rc in
        0) passed=$((passed + 1)) ;;
        77) ;;
        *) failed=$((failed + 1)); [ "$first_failure" -ne 0 ] || first_failure=$rc ;;
    esac
    vm_restore_devices || echo "=== warning: could not restore the devices after $name"
done

[ "$failed" -eq 0 ] || exit "$first_failure"
[ "$passed" -gt 0 ] || exit 77
exit 0
