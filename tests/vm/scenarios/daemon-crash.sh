#!/usr/bin/env bash
# VM tier scenario (issue 8, 6): hostdevd killed with SIGKILL in the middle
# of a destroy, then restarted on the same state directory.  The nested
# QEMU (inside the domain's cgroup) holds every test device, assigned
# through hostdevd; `hostdevctl destroy` starts, hostdevd dies, and the
# restarted daemon must finish the work (with one more destroy when the
# devices had not left the domain yet, as docs/hostdevd.rst says): every
# device on its original driver, driver_override cleared, nothing tracked or
# pending, no /dev/vfio/N left, nothing in the kernel log, and no device
# access left to the cgroup (EPERM for every group's old device number and
# for /dev/vfio/vfio).
#
# Three rounds, each with its own guest:
#   progress         SIGKILL from outside at the first DESTROY_PROGRESS that
#                    counts a device given back (as the simulated host's
#                    test does): some groups back, the others on their way;
#   release-recorded hostdevd kills itself (HD_CRASH_AT) right after the
#                    destroy recorded that the devices left the domain,
#                    before anyone (the security layer included) heard of it;
#   destroy-adopted  ... right after it took over QEMU's VFIO files, before
#                    QEMU was signalled: QEMU lives on, destroy again.
# shellcheck disable=SC2154 # q_pid, q_qmp, q_hdqmp: set by vm_qemu_start
# shellcheck disable=SC2119 # vm_hd_start's arguments are optional
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
vm_discover
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
vm_hd_init daemon-crash || { echo "SKIP: $VM_HOSTDEVD or $VM_HOSTDEVCTL was not built"; exit 77; }
[ -f /sys/fs/cgroup/cgroup.controllers ] || { echo "SKIP: no cgroup2 at /sys/fs/cgroup"; exit 77; }

domain=crash
all=("${VM_DEVICES[@]}")
groups=()
for a in "${all[@]}"; do
    g=$(vm_group "$a")
    [[ " ${groups[*]} " == *" $g "* ]] || groups+=("$g")
done
cg=$(vm_cgroup_new hd-daemon-crash)
copies=()
for g in "${groups[@]}"; do copies+=("/tmp/crash-vfio-$g"); done
bridge_driver=$(vm_driver "$VM_PCIBR")
q_pid=
w_pid=
d_pid=

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    vm_stop_pid "$w_pid"
    vm_stop_pid "$d_pid"
    [ -z "$q_pid" ] || vm_qemu_stop q
    vm_hd_cleanup "$domain" "${all[@]}"
    rmdir "$cg" 2>/dev/null || true
    rm -f "${copies[@]}"
}
trap cleanup EXIT

override_set() {
    local a
    for a in "${all[@]}"; do cat "$VM_SYS/devices/$a/driver_override"; done | sort -u | tr '\n' ' '
}
nodes() {
    local g out=()
    for g in "${groups[@]}"; do [ -e "/dev/vfio/$g" ] && out+=("$g"); done
    echo "${out[*]}"
}
native_count() {
    local a n=0
    for a in "${all[@]}"; do [ "$(vm_driver "$a")" != "$(vm_native_driver "$a")" ] || n=$((n + 1)); done
    echo "$n"
}
in_domain() {
    vm_hd_json "len([d for x in r if x['name'] == '$domain' for d in x['devices']])" domains
}
sec_records() {
    python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["records"]))' \
        "$VM_HD_STATE/security.json" 2>/dev/null || echo "?"
}

# watch_events OUT [PID]: a client of hostdevd printing every event to OUT;
# with PID, it sends PID SIGKILL at the first DESTROY_PROGRESS that counts
# a device given back.  Sets w_pid once it is connected.
watch_events() {
    python3 -u - "$HD_SRCDIR/tools" "$VM_HD_SOCK" "${2:-0}" >"$1" 2>&1 <<'PY' &
import json, os, signal, sys, time
sys.path.insert(0, sys.argv[1])
client = __import__("hostdev-client")
victim = int(sys.argv[3])
c = client.HostdevClient(sys.argv[2])
print("ready")
try:
    while True:
        ev = c.next_event()
        print(int(time.time() * 1000), ev["event"], json.dumps(ev["data"]))
        if victim and ev["event"] == "DESTROY_PROGRESS" and ev["data"]["given-back"] > 0:
            os.kill(victim, signal.SIGKILL)
            print(int(time.time() * 1000), "SIGKILL sent to", victim)
            victim = 0
except (ConnectionError, OSError) as e:
    print(int(time.time() * 1000), "connection lost:", e)
PY
    w_pid=$!
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q '^ready$' "$1" && return 0
        kill -0 "$w_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$1"
    return 1
}

# round NAME: one guest with every device, destroyed with hostdevd killed
# half-way (NAME says how, see the top), then the restarted daemon.
round() {
    local name=$1 env=() out rc t0 t1 t2 i a status killer=0 events=/tmp/crash-events-$1
    local mark=dk-$1
    vm_log "--- round $name"
    vm_mark "$mark"
    [ "$name" = progress ] || env=("HD_CRASH_AT=$name")

    # Step 1: the guest, its devices assigned through hostdevd.
    vm_hd_start "${env[@]}" || { vm_expect "$name: hostdevd starts" up failed; return; }
    vm_hd_xml /tmp/$domain.xml "$domain" "${all[@]}"
    rc=0
    out=$(vm_hdctl define "$domain" --cgroup "$cg" && vm_hdctl prepare "$domain" /tmp/$domain.xml) || rc=$?
    vm_expect "$name: prepare every device" "0 ${#all[@]}" "$rc $(in_domain)"
    for i in "${!groups[@]}"; do vm_node_copy "/dev/vfio/${groups[i]}" "${copies[i]}"; done
    # shellcheck disable=SC2054 # commas are QEMU's
    local args=(-device pcie-root-port,id=rp4,chassis=5 -device pcie-root-port,id=rp5,chassis=6)
    for i in "${!all[@]}"; do
        args+=(-device "vfio-pci,host=${all[i]},bus=rp$i,id=$(vm_hd_alias "${all[i]}")")
    done
    t0=$(vm_now_ms)
    VM_QEMU_CGROUP=$cg vm_qemu_start q "${args[@]}" ||
        { vm_expect "$name: QEMU starts in the cgroup with every device" up failed; return; }
    vm_fact "crash $name: nested QEMU with ${#all[@]} devices up after (ms)" "$(($(vm_now_ms) - t0))"
    vm_expect "$name: QEMU holds every group" "${#groups[@]}" "$(vm_qemu_fds_on q '^/dev/vfio/[0-9]+$')"
    vm_expect "$name: define QMP socket and pid" ok \
        "$(vm_hdctl define "$domain" --qmp "$q_hdqmp" --pid "$q_pid" >/dev/null && echo ok)"
    vm_expect "$name: the cgroup may open the container" ok "$(vm_open_in "$cg" /dev/vfio/vfio)"

    # Step 2: destroy, and hostdevd killed half-way.
    [ "$name" = progress ] && killer=$VM_HD_PID
    watch_events "$events" "$killer" || { vm_expect "$name: event watcher" ready failed; return; }
    t0=$(vm_now_ms)
    rm -f /tmp/crash-destroy.rc
    (
        rc=0
        "$VM_HOSTDEVCTL" --socket "$VM_HD_SOCK" destroy --no-progress "$domain" \
            >/tmp/crash-destroy.out 2>&1 || rc=$?
        echo "$rc" >/tmp/crash-destroy.rc
    ) &
    d_pid=$!
    # hostdevd dies, or (if it does not) the destroy ends: 2 s more then.
    for ((i = 0; i < 1200; i++)); do
        kill -0 "$VM_HD_PID" 2>/dev/null || break
        kill -0 "$d_pid" 2>/dev/null || vm_wait_gone "$VM_HD_PID" 2 || break
        sleep 0.1
    done
    t1=$(vm_now_ms)
    status=alive
    if ! kill -0 "$VM_HD_PID" 2>/dev/null; then
        status=0
        wait "$VM_HD_PID" 2>/dev/null || status=$?
    fi
    vm_expect "$name: hostdevd died of SIGKILL during the destroy" 137 "$status"
    if [ "$status" = alive ]; then
        kill -KILL "$VM_HD_PID" 2>/dev/null || true
        wait "$VM_HD_PID" 2>/dev/null || true
    fi
    VM_HD_PID=
    vm_fact "crash $name: killed after (ms)" \
        "$((t1 - t0)); then: $(native_count)/${#all[@]} devices native, QEMU $(kill -0 "$q_pid" 2>/dev/null && echo alive || echo gone)"
    vm_wait_gone "$d_pid" 30 || true
    wait "$d_pid" 2>/dev/null || true
    d_pid=
    vm_expect "$name: the destroying hostdevctl lost hostdevd (exit 3)" 3 \
        "$(cat /tmp/crash-destroy.rc 2>/dev/null || echo none)"
    vm_wait_gone "$w_pid" 10 || true
    wait "$w_pid" 2>/dev/null || true
    w_pid=
    vm_fact "crash $name: events before the kill" \
        "$(grep -cE 'DEVICE_RELEASED' "$events" || true) released, $(grep -cE 'GROUP_GIVEN_BACK' "$events" || true) given back, progress: $(grep DESTROY_PROGRESS "$events" | sed 's/.*"given-back": *\([0-9]*\).*/\1/' | tr '\n' ' ')"
    cp "$events" "${HD_VM_RESULTS:-/tmp}/daemon-crash-$name.events"
    if [ "$name" = progress ]; then
        vm_expect "$name: killed while groups were still on their way back" yes \
            "$([ "$(native_count)" -lt "${#all[@]}" ] && echo yes || echo no)"
    fi

    # Step 3: the restarted daemon finishes, with one more destroy if the
    # devices had not left the domain.
    t1=$(vm_now_ms)
    vm_hd_start || { vm_expect "$name: hostdevd restarts" up failed; return; }
    t2=$(vm_now_ms)
    out=$(in_domain)
    vm_fact "crash $name: restarted in (ms)" \
        "$((t2 - t1)); then: $(native_count)/${#all[@]} native, $out in the domain, $(vm_hd_state), security.json $(sec_records) records"
    if [ "$out" != 0 ]; then
        rc=0
        out=$(vm_hdctl destroy --no-progress "$domain") || rc=$?
        echo "$out"
        vm_fact "crash $name: destroy again" "status $rc: $(tr '\n' ' ' <<<"$out")"
        vm_expect "$name: destroy again" 0 "$rc"
    fi
    # Within a minute (a poll takes most of a second under TCG).
    t2=$(vm_now_ms)
    for ((i = 0; $(vm_now_ms) - t2 < 60000; i++)); do
        [ "$(native_count)" = "${#all[@]}" ] &&
            [[ $(vm_hd_state) == "tracked 0 pending-groups [] security-pending []" ]] && break
        sleep 0.2
    done
    vm_fact "crash $name: then all back, nothing tracked after (ms)" \
        "$(($(vm_now_ms) - t2)) ($i polls before)"
    vm_fact "crash $name: QEMU pid the domain names now" \
        "$(vm_hd_json "[x['pid'] for x in r if x['name'] == '$domain']" domains) (QEMU was $q_pid)"
    wait "$q_pid" 2>/dev/null || true
    vm_expect "$name: QEMU is gone" no "$(kill -0 "$q_pid" 2>/dev/null && echo yes || echo no)"
    q_pid=

    # Step 4: everything back, nothing left.
    vm_expect "$name: every device on its native driver" "$(vm_native_drivers "${all[@]}")" \
        "$(vm_drivers "${all[@]}")"
    vm_expect "$name: driver_override cleared" "(null) " "$(override_set)"
    vm_expect "$name: nothing tracked, nothing pending" \
        "tracked 0 pending-groups [] security-pending []" "$(vm_hd_state)"
    vm_expect "$name: no /dev/vfio/N left" "" "$(nodes)"
    vm_expect "$name: the bridge keeps its driver" "$bridge_driver" "$(vm_driver "$VM_PCIBR")"
    vm_expect "$name: no security record left" 0 "$(sec_records)"
    out=$(vm_open_in "$cg" "${copies[@]}" /dev/vfio/vfio)
    vm_fact "crash $name: the cgroup opens the groups' old numbers and the container" "$out"
    vm_expect "$name: no device access left to the cgroup" \
        "$(printf 'EPERM %.0s' "${copies[@]}")EPERM" "$out"
    vm_expect "$name: the root cgroup still opens the container" ok "$(vm_open /dev/vfio/vfio)"
    vm_expect "$name: kernel logs no trouble" "" "$(vm_kernel_trouble "$mark" "${all[@]}")"
    vm_hd_stop
}

round progress
round release-recorded
round destroy-adopted
vm_hd_start && vm_expect "undefine" ok "$(vm_hdctl undefine "$domain" >/dev/null && echo ok)"

vm_done
