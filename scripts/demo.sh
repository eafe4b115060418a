#!/usr/bin/env bash
# make demo: a guest with 16 GPUs (32 functions) on the simulated gpu16 host,
# driven through hostdevd and hostdevctl.
#
# The guest's QEMU is stood in for by scripts/demo-qemu.py, a QMP server
# holding every group's /dev/vfio/N open (closing one when its last device
# is unplugged, before it sends DEVICE_DELETED), so the daemon finds the
# holders in /proc and talks to the monitor exactly as on a real host.
# The simulated host also serves rtnetlink, which hostdevd reaches through
# simnl-shim.so: an SR-IOV VF hot-plugged as <interface type='hostdev'>
# gets its MAC and VLAN from its PF and has them restored when it goes home.
# Everything runs in a private mount namespace, and the simulated host is
# unmounted, the daemon and the QEMU ended, on exit, Ctrl-C or failure.
set -euo pipefail

build=${1:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)

if [ "$(id -u)" -eq 0 ] && [ -z "${HD_DEMO_IN_NAMESPACE:-}" ]; then
    exec env HD_DEMO_IN_NAMESPACE=1 unshare --mount --propagation private "$0" "$build"
fi

simhost=$build/tests/sim/hostdev-simhost
hostdevd=$build/src/daemon/hostdevd
hostdevctl=$build/src/cli/hostdevctl
rtnl_shim=$build/tests/sim/simnl-shim.so
for bin in "$simhost" "$hostdevd" "$hostdevctl" "$rtnl_shim"; do
    [ -e "$bin" ] || { echo "demo: $bin is missing (build first)" >&2; exit 1; }
done
[ -c /dev/fuse ] || { echo "demo: /dev/fuse is missing: the simulated host needs FUSE" >&2; exit 1; }

work=$(mktemp -d /tmp/hostdev-demo.XXXXXX)
root=$work/host
state=$work/state
sock=$work/hostdevd.sock
mkdir -p "$root" "$state"
sim_pid=""
qemu_pid=""
daemon_pid=""

cleanup() {
    if [ -n "$qemu_pid" ]; then kill -9 "$qemu_pid" 2>/dev/null || true; fi
    if [ -n "$daemon_pid" ]; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
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
ctl() { "$hostdevctl" --socket "$sock" "$@"; }
step() { printf '\n== %s\n' "$*"; }

# Query the simulated host's state document.
simq() {
    python3 - "$root/.sim/state" "$@" <<'EOF2'
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
elif what == "vf":
    for d in state["devices"]:
        if d["address"] == sys.argv[3]:
            print(d["vf"]["mac"], d["vf"]["vlan"])
EOF2
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

group_of() { basename "$(readlink "$root/sys/bus/pci/devices/$1/iommu_group")"; }
alias_of() { local a=${1//:/-}; echo "hostdev-${a//./-}"; }
# The lines of `hostdevctl list` for IOMMU group $1.
show_group() { ctl list | awk -v g="IOMMU group $1" '$0 ~ "^IOMMU" { p = ($0 == g || index($0, g " ") == 1) } p'; }

step "Mounting the simulated host (topology gpu16)"
"$simhost" --topology "$src/tests/sim/topologies/gpu16.json" --rtnl-socket "$work/rtnl.sock" \
    "$root" &
sim_pid=$!
for _ in $(seq 100); do
    [ -e "$root/.sim/state" ] && break
    sleep 0.1
done
[ -e "$root/.sim/state" ] || { echo "demo: the simulated host did not come up" >&2; exit 1; }
mapfile -t gpus < <(simq on nvidia)
mapfile -t audios < <(simq on snd_hda_intel)
echo "${#gpus[@]} GPUs and ${#audios[@]} HDMI audio functions, each pair one IOMMU group"

step "Starting hostdevd on it (its rtnetlink goes to the simulated host)"
LD_PRELOAD=$rtnl_shim HD_SIM_RTNL=$work/rtnl.sock \
    "$hostdevd" --foreground --root "$root" --state-dir "$state" --socket "$sock" \
    --log-level warning 2>"$work/hostdevd.log" &
daemon_pid=$!
retry 100 'ctl status >/dev/null 2>&1' || { cat "$work/hostdevd.log" >&2; exit 1; }
ctl status

xml=$work/guest.xml
{
    echo "<domain><name>guest</name><devices>"
    for addr in "${gpus[@]}" "${audios[@]}"; do
        IFS=':.' read -r d b s f <<<"$addr"
        echo "  <hostdev mode='subsystem' type='pci' managed='yes'><driver name='vfio'/>"
        echo "    <source><address domain='0x$d' bus='0x$b' slot='0x$s' function='0x$f'/></source>"
        echo "    <alias name='$(alias_of "$addr")'/>"
        echo "  </hostdev>"
    done
    echo "</devices></domain>"
} >"$xml"

step "hostdevctl define guest; hostdevctl prepare guest guest.xml (all 32 functions)"
ctl define guest
t0=$(now)
ctl prepare guest "$xml"
prepare_s=$(since "$t0")
echo "prepared in $prepare_s s: $(simq count-on vfio-pci) functions on vfio-pci"

step "Starting the guest's QEMU (stand-in: a QMP server holding every /dev/vfio/N)"
qemu_args=()
for addr in "${gpus[@]}" "${audios[@]}"; do qemu_args+=("$(alias_of "$addr")=$addr"); done
python3 "$src/scripts/demo-qemu.py" --socket "$work/qemu.qmp" --root "$root" \
    "${qemu_args[@]}" >"$work/qemu.out" &
qemu_pid=$!
retry 200 'grep -q ready "$work/qemu.out"'
ctl define guest --qmp "$work/qemu.qmp" --pid "$qemu_pid"
ctl domains

gpu0=${gpus[0]}
audio0=${audios[0]}
g0=$(group_of "$gpu0")
hostdev_xml() {
    IFS=':.' read -r d b s f <<<"$1"
    echo "<hostdev mode='subsystem' type='pci' managed='yes'><source>" \
         "<address domain='0x$d' bus='0x$b' slot='0x$s' function='0x$f'/></source></hostdev>"
}

step "hostdevctl detach-device guest: audio function $audio0"
hostdev_xml "$audio0" >"$work/audio.xml"
ctl detach-device guest "$work/audio.xml"
show_group "$g0"
echo "$audio0 is on $(simq driver "$audio0"): it waits on the inactive list, nothing rebound"

step "hostdevctl detach-device guest: GPU $gpu0 (the last device of group $g0)"
hostdev_xml "$gpu0" >"$work/gpu.xml"
t0=$(now)
ctl detach-device guest "$work/gpu.xml"
detach_s=$(since "$t0")
show_group "$g0"
echo "group $g0 given back in $detach_s s (QEMU closed it, then DEVICE_DELETED):" \
     "$gpu0 on $(simq driver "$gpu0"), $audio0 on $(simq driver "$audio0")"

vf=0000:60:10.2
pf=$(basename "$(readlink -f "$root/sys/bus/pci/devices/$vf/physfn")")
pf_if=$(ls "$root/sys/bus/pci/devices/$pf/net")
# ip link show's line for the VF, from the simulated PF.
vf_line() { simq vf "$vf" | { read -r mac vlan; echo "$pf_if: vf 1 link/ether $mac, vlan $vlan"; }; }
echo "vf 0000:60:10.2 mac 02:00:00:00:0a:01" >"$root/.sim/ctl"
echo "vf 0000:60:10.2 vlan 7" >"$root/.sim/ctl"

step "hostdevctl attach-device guest: SR-IOV VF $vf as <interface type='hostdev'>, MAC and VLAN"
echo "before, as the host's admin left it: $(vf_line)  ($vf on $(simq driver "$vf"))"
IFS=':.' read -r d b s f <<<"$vf"
cat >"$work/vf.xml" <<EOF2
<interface type='hostdev' managed='yes'>
  <source><address type='pci' domain='0x$d' bus='0x$b' slot='0x$s' function='0x$f'/></source>
  <mac address='52:54:00:6d:90:01'/>
  <vlan><tag id='42'/></vlan>
  <alias name='$(alias_of "$vf")'/>
</interface>
EOF2
ctl attach-device guest "$work/vf.xml"
echo "for the guest, set by its PF $pf:   $(vf_line)  ($vf on $(simq driver "$vf"))"
[ "$(simq vf "$vf")" = "52:54:00:6d:90:01 42" ]

step "hostdevctl destroy guest: QEMU is ended, every remaining group goes home in parallel"
t0=$(now)
ctl destroy guest
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
destroy_s=$(since "$t0")
echo "destroy done in $destroy_s s"
retry 100 '[ "$(simq vf "$vf")" = "02:00:00:00:0a:01 7" ]'
echo "given back, restored by the PF:       $(vf_line)  ($vf on $(simq driver "$vf"))"

step "Summary"
tracked=$(ctl --json status | python3 -c 'import json, sys; print(json.load(sys.stdin)["tracked-devices"])')
echo "prepare (32 functions):          $prepare_s s"
echo "detach-device of a GPU:          $detach_s s"
echo "destroy (15 GPUs, 30 fns, 1 VF): $destroy_s s"
echo "GPUs on nvidia:                  $(simq count-on nvidia) / ${#gpus[@]}"
echo "audio on snd_hda_intel:          $(simq count-on snd_hda_intel) / ${#audios[@]}"
echo "VF on ixgbevf, as it was:        $(simq driver "$vf"), $(vf_line)"
echo "devices still tracked:           $tracked"
violations=$(simq violations)
echo "viability violations:            $violations"
[ "$violations" -eq 0 ]
[ "$tracked" -eq 0 ]
[ "$(simq count-on nvidia)" -eq "${#gpus[@]}" ]
[ "$(simq count-on snd_hda_intel)" -eq "${#audios[@]}" ]
[ "$(simq driver "$vf")" = ixgbevf ] && [ "$(simq vf "$vf")" = "02:00:00:00:0a:01 7" ]
echo "demo: OK"
