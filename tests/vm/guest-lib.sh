# Helpers for VM tier guest scenarios (bash; source it).
#
#   . "$HD_SRCDIR/tests/vm/guest-lib.sh"
#
# The devices (docs/vm-tier.rst), found by vm_discover:
#   VM_NIC1 VM_NIC2   e1000e, one per root port (a group each)
#   VM_MF0 VM_MF1     e1000e functions 0 and 1 of one slot (one group)
#   VM_PCIBR          the PCIe-to-PCI bridge
#   VM_BR0 VM_BR1     e1000 behind it (one group with the bridge)
# shellcheck shell=bash

VM_SYS=/sys/bus/pci
VM_HOLDER=${HD_VM_HOLDER:-$HD_BUILDDIR/tests/vm/vfio-holder}
VM_QMP=$HD_SRCDIR/tests/vm/qmp.py
VM_FACTS=${HD_VM_RESULTS:-/tmp}/facts.txt
vm_failures=0

vm_log() { echo "[$(vm_now_ms) ms] $*"; }

# Milliseconds since the epoch (for durations).
vm_now_ms() {
    date +%s%3N
}

vm_discover() {
    local d id
    local e1000e=() e1000=()
    VM_MF0='' VM_MF1='' VM_PCIBR=''
    for d in "$VM_SYS"/devices/*; do
        id=$(cat "$d/vendor"):$(cat "$d/device")
        case $id in
            0x8086:0x10d3) e1000e+=("${d##*/}") ;;
            0x8086:0x100e) e1000+=("${d##*/}") ;;
            0x1b36:0x000e) VM_PCIBR=${d##*/} ;;
        esac
    done
    local nics=() a
    for a in "${e1000e[@]}"; do
        case $a in
            *.1) VM_MF1=$a; VM_MF0=${a%.1}.0 ;;
        esac
    done
    for a in "${e1000e[@]}"; do
        [ "$a" = "$VM_MF0" ] || [ "$a" = "$VM_MF1" ] || nics+=("$a")
    done
    VM_NIC1=${nics[0]:-}
    VM_NIC2=${nics[1]:-}
    VM_BR0=${e1000[0]:-}
    VM_BR1=${e1000[1]:-}
    VM_DEVICES=("$VM_NIC1" "$VM_NIC2" "$VM_MF0" "$VM_MF1" "$VM_BR0" "$VM_BR1")
    for a in "${VM_DEVICES[@]}" "$VM_PCIBR"; do
        [ -n "$a" ] || { echo "vm_discover: missing test devices" >&2; return 1; }
    done
}

# The IOMMU group number of a device.
vm_group() {
    local t
    t=$(readlink "$VM_SYS/devices/$1/iommu_group") || return 1
    echo "${t##*/}"
}

# The driver a device is bound to, or nothing.
vm_driver() {
    local t
    t=$(readlink "$VM_SYS/devices/$1/driver" 2>/dev/null) || return 0
    echo "${t##*/}"
}

# Write VALUE to FILE in one write; prints the errno name on failure
# (status 1).  An empty driver_override is written as $'\n'.
vm_write() {
    local value=$1 file=$2 err
    if err=$( { printf '%s' "$value" >"$file"; } 2>&1 ); then
        return 0
    fi
    vm_errno_of "$err"
    return 1
}

# Write VALUE to FILE and print "ok" or the errno name; always status 0.
vm_try() {
    local e
    if e=$(vm_write "$1" "$2"); then echo ok; else echo "$e"; fi
}

# Mark the kernel log, and print what it got since a mark.
vm_mark() { echo "hd-vm: mark $1" >/dev/kmsg; }
vm_dmesg_since() {
    dmesg | sed -n "/hd-vm: mark $1\$/,\$p" | tail -n +2 | sed 's/^\[ *[0-9.]*\] //'
}

# Turn a shell's error message into an errno name.
vm_errno_of() {
    case $1 in
        *"No such device or address"*) echo ENXIO ;;
        *"No such device"*) echo ENODEV ;;
        *"Device or resource busy"*) echo EBUSY ;;
        *"Invalid argument"*) echo EINVAL ;;
        *"Operation not permitted"*) echo EPERM ;;
        *"No such file or directory"*) echo ENOENT ;;
        *"Permission denied"*) echo EACCES ;;
        *"Input/output error"*) echo EIO ;;
        *) echo "?($1)" ;;
    esac
}

vm_unbind() {
    local drv
    drv=$(vm_driver "$1")
    [ -z "$drv" ] || vm_write "$1" "$VM_SYS/drivers/$drv/unbind"
}

# Bind a device to vfio-pci the way hostdev does: driver_override, unbind,
# drivers_probe.
vm_bind_vfio() {
    vm_write vfio-pci "$VM_SYS/devices/$1/driver_override" &&
        vm_unbind "$1" &&
        vm_write "$1" "$VM_SYS/drivers_probe"
}

# Give a device back to its native driver: clear driver_override, unbind,
# drivers_probe.
vm_bind_native() {
    vm_write $'\n' "$VM_SYS/devices/$1/driver_override" &&
    vm_unbind "$1" && vm_write "$1" "$VM_SYS/drivers_probe"
}

# Every test device back on its native driver (run between scenarios).
vm_restore_devices() {
    local a
    vm_discover || return 1
    for a in "${VM_DEVICES[@]}"; do
        if [ "$(cat "$VM_SYS/devices/$a/driver_override")" != "(null)" ] ||
            [ "$(vm_driver "$a")" != "$(vm_native_driver "$a")" ]; then
            vm_bind_native "$a" >/dev/null || return 1
        fi
    done
}

vm_native_driver() {
    case $(cat "$VM_SYS/devices/$1/device") in
        0x10d3) echo e1000e ;;
        0x100e) echo e1000 ;;
    esac
}

# A vfio-holder in the background: vm_holder_start VAR ARGS... starts it
# (with --no-stdin), waits until it is ready (or failed) and sets VAR_pid and
# VAR_out (its output file); status 1 if it failed.  vm_holder_stop VAR
# sends it SIGTERM and waits for it to release everything and exit.
vm_holder_start() {
    local var=$1 out pid i
    shift
    out=$(mktemp /tmp/holder.XXXXXX)
    "$VM_HOLDER" --no-stdin "$@" </dev/null >"$out" 2>&1 &
    pid=$!
    printf -v "${var}_pid" %s "$pid"
    printf -v "${var}_out" %s "$out"
    for ((i = 0; i < 300; i++)); do
        grep -q '^ready$' "$out" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$pid" 2>/dev/null
    return 1
}

vm_holder_stop() {
    local pid=${1}_pid
    pid=${!pid}
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# A nested QEMU (TCG, paused, no devices but four empty root ports rp0-rp3)
# to be the guest: vm_qemu_start VAR [QEMU_ARGS...] sets VAR_pid and
# VAR_qmp (its QMP socket) once QMP answers; vm_qmp VAR COMMAND [JSON]
# [--wait-event NAME] runs a command (tests/vm/qmp.py); vm_qemu_stop VAR
# quits it (SIGKILL after 10 s).
vm_qemu_start() {
    local var=$1 sock pid i
    shift
    sock=/tmp/$var.qmp
    rm -f "$sock"
    qemu-system-x86_64 -accel tcg -machine q35 -m 128 -S -nodefaults -display none \
        -global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off \
        -device pcie-root-port,id=rp0,chassis=1 -device pcie-root-port,id=rp1,chassis=2 \
        -device pcie-root-port,id=rp2,chassis=3 -device pcie-root-port,id=rp3,chassis=4 \
        -qmp "unix:$sock,server=on,wait=off" "$@" </dev/null >"/tmp/$var.log" 2>&1 &
    pid=$!
    printf -v "${var}_pid" %s "$pid"
    printf -v "${var}_qmp" %s "$sock"
    for ((i = 0; i < 600; i++)); do
        [ -S "$sock" ] && python3 "$VM_QMP" "$sock" query-status >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "/tmp/$var.log" >&2
    return 1
}

vm_qmp() {
    local sock=${1}_qmp
    shift
    python3 "$VM_QMP" "${!sock}" "$@"
}

vm_qemu_stop() {
    local pid=${1}_pid i
    pid=${!pid}
    vm_qmp "$1" quit >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# The targets of a process's fds, one a line (/dev/vfio/N, anon_inode:...).
vm_fds() {
    local f
    for f in /proc/"$1"/fd/*; do readlink "$f" 2>/dev/null || true; done
}

# Record a measured fact: vm_fact KEY VALUE...  (facts.txt in the results)
vm_fact() {
    local key=$1
    shift
    printf '%-40s %s\n' "$key" "$*" | tee -a "$VM_FACTS"
}

# vm_expect DESCRIPTION EXPECTED ACTUAL: a check; failures are counted.
vm_expect() {
    if [ "$2" = "$3" ]; then
        echo "ok: $1 ($3)"
    else
        echo "FAIL: $1: expected '$2', got '$3'"
        vm_failures=$((vm_failures + 1))
    fi
}

# The scenario's exit status from the checks made.
vm_done() {
    if [ "$vm_failures" -ne 0 ]; then
        echo "$vm_failures check(s) failed"
        exit 1
    fi
    echo "all checks passed"
    exit 0
}
