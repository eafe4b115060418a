#!/usr/bin/env bash
# make demo: a guest with 16 GPUs (32 functions) on the simulated gpu16 host.
#
# The manager is driven through tests/manager/mgr-tool until hostdevd and
# hostdevctl exist; the guest's QEMU is stood in for by scripts/demo-qemu.py,
# a process holding every group's /dev/vfio/N open (and closing one when its
# last device is unplugged), so the manager finds the holders in /proc
# exactly as it would on a real host.  Everything runs in a private mount
# namespace, and the simulated host is unmounted on exit, Ctrl-C or failure.
set -euo pipefail

build=${1:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)

if [ "$(id -u)" -eq 0 ] && [ -z "${HD_DEMO_IN_NAMESPACE:-}" ]; then
    exec env HD_DEMO_IN_NAMESPACE=1 unshare --mount --propagation private "$0" "$build"
fi

simhost=$build/tests/sim/hostdev-simhost
tool=$build/tests/manager/mgr-tool
for bin in "$simhost" "$tool"; do
    [ -x "$bin" ] || { echo "demo: $bin is missing (build first)" >&2; exit 1; }
done
[ -c /dev/fuse ] || { echo "demo: /dev/fuse is missing: the simulated host needs FUSE" >&2; exit 1; }

work=$(mktemp -d /tmp/hostdev-demo.XXXXXX)
root=$work/host
state=$work/state
mkdir -p "$root" "$state"
sim_pid=""
qemu_pid=""

cleanup() {
    if [ -n "$qemu_pid" ]; then kill -9 "$qemu_pid" 2>/dev/null || true; fi
    if [ -n "$sim_pid" ]; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    mountpoint -q "$root" && umount -l "$root" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT TERM

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
mgr() { "$tool" "$root" "$state" "$@"; }
step() { printf '\n== %s\n' "$*"; }

# Query the simulated host's state document.
simq() {
    python3 - "$root/.sim/state" "$@" <<'EOF'
import json, sys
state = json.load(open(sys.argv[1]))
what = sys.argv[2]
if what == "on":
    for d in state["devices"]:
        if d["driver"] == sys.argv[3]:
            print(d["address"])
elif what == "driver":
    for d in state["devices"]:
        if d["address"] == sys.argv[3]:
            print(d["driver"] or "none")
elif what == "count-on":
    print(sum(1 for d in state["devices"] if d["driver"] == sys.argv[3]))
elif what == "violations":
    print(state["violations"])
EOF
}

# retry N CONDITION: evaluate CONDITION every 50 ms, at most N times.
retry() {
    local i
    for ((i = 0; i < $1; i++)); do
        eval "$2" && return 0
        sleep 0.05
    done
    echo "demo: gave up waiting for: $2" >&2
    return 1
}

# How many /dev/vfio group files QEMU holds.
held_by_qemu() {
    find "/proc/$qemu_pid/fd" -lname "$root/dev/vfio/*" 2>/dev/null | wc -l
}

# Progress lines "given back N/M" become a bar.
bar() {
    local line done total width=40 n
    while read -r line; do
        case $line in
            "given back "*)
                done=${line#given back }
                total=${done#*/}
                done=${done%/*}
                n=$((done * width / total))
                printf '\r[%-*s] %s/%s devices' "$width" \
                    "$(printf '%*s' "$n" '' | tr ' ' '#')" "$done" "$total"
                ;;
            *) printf '%s\n' "$line" ;;
        esac
    done
    echo
}

group_of() { basename "$(readlink "$root/sys/bus/pci/devices/$1/iommu_group")"; }

step "Mounting the simulated host (topology gpu16)"
"$simhost" --topology "$src/tests/sim/topologies/gpu16.json" "$root" &
sim_pid=$!
for _ in $(seq 100); do
    [ -e "$root/.sim/state" ] && break
    sleep 0.1
done
[ -e "$root/.sim/state" ] || { echo "demo: the simulated host did not come up" >&2; exit 1; }
mapfile -t gpus < <(simq on nvidia)
mapfile -t audios < <(simq on snd_hda_intel)
echo "${#gpus[@]} GPUs and ${#audios[@]} HDMI audio functions, each pair one IOMMU group"

xml=$work/guest.xml
{
    echo "<domain><name>guest</name><devices>"
    for addr in "${gpus[@]}" "${audios[@]}"; do
        IFS=':.' read -r d b s f <<<"$addr"
        echo "  <hostdev mode='subsystem' type='pci' managed='yes'><driver name='vfio'/>"
        echo "    <source><address domain='0x$d' bus='0x$b' slot='0x$s' function='0x$f'/></source>"
        echo "  </hostdev>"
    done
    echo "</devices></domain>"
} >"$xml"

step "Assigning all 32 functions to domain 'guest'"
t0=$(now)
mgr prepare guest "$xml" >/dev/null
echo "prepared in $(since "$t0") s: $(simq count-on vfio-pci) functions on vfio-pci"

step "Starting the guest's QEMU (stand-in: a process holding every /dev/vfio/N)"
mkfifo "$work/qemu.ctl"
nodes=()
for addr in "${gpus[@]}"; do nodes+=("$root/dev/vfio/$(group_of "$addr")"); done
python3 "$src/scripts/demo-qemu.py" "$work/qemu.ctl" "${nodes[@]}" &
qemu_pid=$!
exec 5>"$work/qemu.ctl"
retry 100 '[ "$(held_by_qemu)" -eq ${#nodes[@]} ]'
echo "QEMU (pid $qemu_pid) holds ${#nodes[@]} groups"

gpu0=${gpus[0]}
audio0=${audios[0]}
g0=$(group_of "$gpu0")

step "detach-device: audio function $audio0"
mgr release guest "$audio0" | grep "^$audio0"
echo "$audio0 is on $(simq driver "$audio0"): it waits on the inactive list, nothing rebound"

step "detach-device: GPU $gpu0 (the last device of group $g0)"
mgr release guest "$gpu0" >/dev/null
echo "released; QEMU still holds group $g0, so it stays pending: $gpu0 on $(simq driver "$gpu0")"
echo "close $g0" >&5
retry 100 '[ "$(held_by_qemu)" -eq $((${#nodes[@]} - 1)) ]'
echo "QEMU closed /dev/vfio/$g0"
t0=$(now)
retry 200 'mgr give-back >/dev/null; [ "$(simq driver "$gpu0")" = nvidia ]'
echo "group $g0 given back in $(since "$t0") s: $gpu0 on $(simq driver "$gpu0"), $audio0 on $(simq driver "$audio0")"

step "destroy: QEMU is ended, every remaining group goes home in parallel"
t0=$(now)
mgr destroy guest "$qemu_pid" 2> >(bar) >"$work/destroy.out"
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
destroy_s=$(since "$t0")
sleep 0.2
cat "$work/destroy.out"
echo "destroy done in $destroy_s s"

step "Summary"
echo "GPUs on nvidia:             $(simq count-on nvidia) / ${#gpus[@]}"
echo "audio on snd_hda_intel:     $(simq count-on snd_hda_intel) / ${#audios[@]}"
echo "devices still tracked:      $(mgr reconcile | wc -l)"
violations=$(simq violations)
echo "viability violations:       $violations"
[ "$violations" -eq 0 ]
[ "$(simq count-on nvidia)" -eq "${#gpus[@]}" ]
[ "$(simq count-on snd_hda_intel)" -eq "${#audios[@]}" ]
echo "demo: OK"
