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
        *"Inappropriate ioctl for device"*) echo ENOTTY ;;
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
# to be the guest: vm_qemu_start VAR [QEMU_ARGS...] sets VAR_pid, VAR_qmp
# (its QMP socket) and VAR_hdqmp (a second monitor, hostdevd's own: hostdevd
# keeps it connected, and QEMU serves one client per monitor socket) once
# QMP answers; vm_qmp VAR COMMAND [JSON]
# [--wait-event NAME] runs a command (tests/vm/qmp.py); vm_qemu_stop VAR
# quits it (SIGKILL after 10 s).  With VM_QEMU_CGROUP set to a cgroup
# directory, QEMU starts as a process of that cgroup (its first open of a
# VFIO node is already subject to the cgroup's device access).
vm_qemu_start() {
    local var=$1 sock hdsock pid i
    shift
    sock=/tmp/$var.qmp
    hdsock=/tmp/$var.hd.qmp
    rm -f "$sock" "$hdsock"
    (
        [ -z "${VM_QEMU_CGROUP:-}" ] || echo "$BASHPID" >"$VM_QEMU_CGROUP/cgroup.procs"
        exec qemu-system-x86_64 -accel tcg -machine q35 -m 128 -S -nodefaults -display none \
            -global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off \
            -device pcie-root-port,id=rp0,chassis=1 -device pcie-root-port,id=rp1,chassis=2 \
            -device pcie-root-port,id=rp2,chassis=3 -device pcie-root-port,id=rp3,chassis=4 \
            -qmp "unix:$sock,server=on,wait=off" -qmp "unix:$hdsock,server=on,wait=off" "$@"
    ) </dev/null >"/tmp/$var.log" 2>&1 &
    pid=$!
    printf -v "${var}_pid" %s "$pid"
    printf -v "${var}_qmp" %s "$sock"
    printf -v "${var}_hdqmp" %s "$hdsock"
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

# --- The manager on the real kernel (tests/manager/mgr-tool) ---
#
# vm_mgr_init NAME prepares a fresh state directory (/run/hostdev-vm/NAME)
# and a log of every mgr-tool run (NAME.mgr.log in the results); status 1
# when mgr-tool was not built.  vm_mgr VERB ARGS... runs mgr-tool on "/"
# with that state directory, prints what it printed (stdout and stderr) and
# returns its status.
VM_MGR_TOOL=${HD_MGR_TOOL:-$HD_BUILDDIR/tests/manager/mgr-tool}

vm_mgr_init() {
    VM_MGR_STATE=/run/hostdev-vm/$1
    VM_MGR_LOG=${HD_VM_RESULTS:-/tmp}/$1.mgr.log
    rm -rf "$VM_MGR_STATE"
    mkdir -p "$VM_MGR_STATE"
    : >"$VM_MGR_LOG"
    [ -x "$VM_MGR_TOOL" ]
}

# vm_run_logged LOG NAME ARGS -- CMD...: run CMD; "$ NAME ARGS", its
# status and time, and its output go to LOG; its output is printed and its
# status returned.
vm_run_logged() {
    local log=$1 name=$2 out rc=0 t0 args=()
    shift 2
    while [ "$1" != -- ]; do args+=("$1"); shift; done
    shift
    t0=$(vm_now_ms)
    out=$("$@" 2>&1) || rc=$?
    {
        echo "[$t0 ms] \$ $name ${args[*]} -> status $rc after $(($(vm_now_ms) - t0)) ms"
        [ -z "$out" ] || echo "$out"
    } >>"$log"
    [ -z "$out" ] || echo "$out"
    return "$rc"
}

vm_mgr() {
    vm_run_logged "$VM_MGR_LOG" mgr-tool "$@" -- "$VM_MGR_TOOL" / "$VM_MGR_STATE" "$@"
}

# vm_mgr_xml FILE DOMAIN ADDR...: a libvirt <domain> with a managed PCI
# <hostdev> per address.
vm_mgr_xml() {
    local file=$1 domain=$2 a d b s f
    shift 2
    {
        echo "<domain type='kvm'><name>$domain</name><devices>"
        for a in "$@"; do
            IFS=':.' read -r d b s f <<<"$a"
            echo "  <hostdev mode='subsystem' type='pci' managed='yes'><driver name='vfio'/>"
            echo "    <source><address domain='0x$d' bus='0x$b' slot='0x$s' function='0x$f'/></source>"
            echo "  </hostdev>"
        done
        echo "</devices></domain>"
    } >"$file"
}

# vm_mgr_tracked OUTPUT ADDR: "STATE DOMAIN" of ADDR in mgr-tool's listing
# OUTPUT, or "untracked".
vm_mgr_tracked() {
    local line
    line=$(grep -m1 "^$2 " <<<"$1" || true)
    if [ -n "$line" ]; then
        awk '{print $2, $3}' <<<"$line"
    else
        echo untracked
    fi
}

# vm_mgr_give_back_until TRIES ADDR...: mgr-tool give-back every 100 ms
# until none of ADDR is tracked any more, at most TRIES times.  Prints the
# number of runs it took; status 1 when it gave up.
vm_mgr_give_back_until() {
    local tries=$1 i a out left
    shift
    for ((i = 1; i <= tries; i++)); do
        out=$(vm_mgr give-back) || true
        left=0
        for a in "$@"; do
            grep -q "^$a " <<<"$out" && left=$((left + 1))
        done
        if [ "$left" -eq 0 ]; then
            echo "$i"
            return 0
        fi
        sleep 0.1
    done
    echo "$tries"
    return 1
}

# vm_mgr_cleanup DOMAIN ADDR...: a scenario's last word (its EXIT trap, once
# its QEMU and holders are gone): DOMAIN's devices are released and given
# back if the manager still tracks any, then each ADDR still off its native
# driver or with a driver_override is rebound natively.
vm_mgr_cleanup() {
    local domain=$1 a
    shift
    if grep -q '"address"' "${VM_MGR_STATE:-/nonexistent}/state.json" 2>/dev/null; then
        vm_mgr release-domain "$domain" >/dev/null 2>&1 || true
        vm_mgr_give_back_until 30 "$@" >/dev/null || true
    fi
    vm_restore_native "$@"
}

# vm_restore_native ADDR...: put back on its native driver, with
# driver_override cleared, each device that is not so (cleanups).
vm_restore_native() {
    local a
    for a in "$@"; do
        if [ "$(cat "$VM_SYS/devices/$a/driver_override")" != "(null)" ] ||
            [ "$(vm_driver "$a")" != "$(vm_native_driver "$a")" ]; then
            vm_bind_native "$a" >/dev/null ||
                echo "cleanup: cannot give $a back to $(vm_native_driver "$a")"
        fi
    done
}

# vm_stop_pid PID: SIGTERM, SIGKILL after 5 s, reap; nothing for "".
vm_stop_pid() {
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null || true
    vm_wait_gone "$1" 5 || kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# vm_drivers ADDR...: "ADDR=DRIVER ..." (none when driverless).
vm_drivers() {
    local a d out=()
    for a in "$@"; do
        d=$(vm_driver "$a")
        out+=("$a=${d:-none}")
    done
    echo "${out[*]}"
}

# vm_native_drivers ADDR...: what vm_drivers prints once every device is
# back on its native driver.
vm_native_drivers() {
    local a out=()
    for a in "$@"; do out+=("$a=$(vm_native_driver "$a")"); done
    echo "${out[*]}"
}

# vm_kernel_trouble MARK ADDR...: the kernel's lines since MARK that report
# trouble (a failed probe, an ownership conflict, a blocked unbind, a BUG or
# WARNING) about one of ADDR or about no device in particular.
vm_kernel_trouble() {
    local mark=$1 a re=''
    shift
    for a in "$@"; do re+="${re:+|}${a//./\\.}"; done
    vm_dmesg_since "$mark" |
        grep -E "BUG|WARNING|Call Trace|Oops|($re).*(probe|fail|error|blocked|in use|refus|not viable|conflict)|(probe|fail).*($re)" ||
        true
}

# vm_qemu_fds_on VAR PATTERN: how many of the nested QEMU's fds match PATTERN
# (grep -E).
vm_qemu_fds_on() {
    local pid=${1}_pid
    vm_fds "${!pid}" | grep -cE "$2" || true
}

# vm_wait_gone PID SECONDS: wait until PID has exited (status 1 if not).
vm_wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    ! kill -0 "$1" 2>/dev/null
}

# A holder with nothing but a device fd: vm_devfd_holder_start VAR ADDR opens
# the device's group, sets a type1v2 container, gets the device fd, then
# closes the group and container fds (as a process does that was handed
# just the device fd) and waits for SIGTERM.  Sets VAR_pid and VAR_out;
# status 1 if it failed.  Stop it with vm_holder_stop VAR.
vm_devfd_holder_start() {
    local var=$1 addr=$2 out pid i
    out=$(mktemp /tmp/devfd.XXXXXX)
    python3 -u - "$addr" "$(vm_group "$addr")" >"$out" 2>&1 <<'PY' &
import ctypes, os, signal, sys, time
addr, group = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
VFIO = 0x3B64  # _IO(';', 100): VFIO_GET_API_VERSION; the others follow
SET_IOMMU, SET_CONTAINER, GET_DEVICE_FD, TYPE1V2 = VFIO + 2, VFIO + 4, VFIO + 6, 3
def ioctl(fd, req, arg):
    r = libc.ioctl(fd, req, arg)
    if r < 0:
        e = ctypes.get_errno()
        print("error", req - VFIO, os.strerror(e)); sys.exit(1)
    return r
gfd = os.open("/dev/vfio/" + group, os.O_RDWR)
cfd = os.open("/dev/vfio/vfio", os.O_RDWR)
container = ctypes.c_int(cfd)
ioctl(gfd, SET_CONTAINER, ctypes.addressof(container))
ioctl(cfd, SET_IOMMU, TYPE1V2)
name = ctypes.create_string_buffer(addr.encode())
dfd = ioctl(gfd, GET_DEVICE_FD, ctypes.addressof(name))
os.close(gfd)
os.close(cfd)
print("device fd", dfd, "group and container closed")
print("ready")
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(3600)
PY
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

# --- hostdevd and hostdevctl on the real kernel ---
#
# vm_hd_init NAME prepares a fresh state directory (/run/hostdev-vm/NAME),
# the socket /run/hostdev-vm/NAME.sock, hostdevd's log (NAME.hostdevd.log
# in the results, kept across restarts) and a log of every hostdevctl run
# (NAME.ctl.log); status 1 when hostdevd or hostdevctl was not built.
# vm_hd_start [VAR=VALUE...] starts hostdevd in the foreground as a
# background job of the scenario (VM_HD_PID; the VAR=VALUE in its
# environment) on that state directory and waits until it answers; status 1
# if it exited instead.  vm_hd_stop ends it (SIGTERM, SIGKILL after 20 s).
# vm_hdctl ARGS... runs hostdevctl on that socket, prints what it printed
# (stdout and stderr) and returns its status.
VM_HOSTDEVD=${HD_HOSTDEVD:-$HD_BUILDDIR/src/daemon/hostdevd}
VM_HOSTDEVCTL=${HD_HOSTDEVCTL:-$HD_BUILDDIR/src/cli/hostdevctl}

vm_hd_init() {
    VM_HD_STATE=/run/hostdev-vm/$1
    VM_HD_SOCK=/run/hostdev-vm/$1.sock
    VM_HD_LOG=${HD_VM_RESULTS:-/tmp}/$1.hostdevd.log
    VM_HD_CTL_LOG=${HD_VM_RESULTS:-/tmp}/$1.ctl.log
    VM_HD_PID=
    rm -rf "$VM_HD_STATE" "$VM_HD_SOCK"
    mkdir -p "$VM_HD_STATE"
    : >"$VM_HD_LOG"
    : >"$VM_HD_CTL_LOG"
    [ -x "$VM_HOSTDEVD" ] && [ -x "$VM_HOSTDEVCTL" ]
}

vm_hd_start() {
    local i
    echo "[$(vm_now_ms) ms] --- hostdevd starts${*:+ with $*}" >>"$VM_HD_LOG"
    env "$@" "$VM_HOSTDEVD" --foreground --state-dir "$VM_HD_STATE" --socket "$VM_HD_SOCK" \
        --log-level info </dev/null >>"$VM_HD_LOG" 2>&1 &
    VM_HD_PID=$!
    for ((i = 0; i < 600; i++)); do
        "$VM_HOSTDEVCTL" --socket "$VM_HD_SOCK" status >/dev/null 2>&1 && return 0
        kill -0 "$VM_HD_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$VM_HD_LOG" >&2
    return 1
}

vm_hd_stop() {
    [ -n "${VM_HD_PID:-}" ] || return 0
    kill -TERM "$VM_HD_PID" 2>/dev/null || true
    vm_wait_gone "$VM_HD_PID" 20 || kill -KILL "$VM_HD_PID" 2>/dev/null || true
    wait "$VM_HD_PID" 2>/dev/null || true
    VM_HD_PID=
}

vm_hdctl() {
    vm_run_logged "$VM_HD_CTL_LOG" hostdevctl "$@" -- "$VM_HOSTDEVCTL" --socket "$VM_HD_SOCK" "$@"
}

# vm_hd_json EXPR ARGS...: hostdevctl --json ARGS, and the Python
# expression EXPR of its reply "r" (json.loads) printed.
vm_hd_json() {
    local expr=$1 out
    shift
    out=$(vm_hdctl --json "$@") || { echo "hostdevctl failed: $out"; return 1; }
    python3 -c 'import json, sys; r = json.loads(sys.argv[2]); print(eval(sys.argv[1]))' \
        "$expr" "$out"
}

# vm_hd_state: what hostdevd still has to do, from its status: "tracked N
# pending-groups [...] security-pending [...]".
vm_hd_state() {
    vm_hd_json '"tracked %d pending-groups %s security-pending %s" % (r["tracked-devices"], r["pending-groups"], r["security-pending"])' status
}

# vm_hd_xml FILE DOMAIN ADDR[=no][@BUS]...: a libvirt <domain> with a PCI
# <hostdev> per address (managed unless =no), each with the alias
# vm_hd_alias gives it; with @BUS (a number) a guest <address> on slot 0 of
# bus BUS, which hostdevd's attach-device turns into bus "pci.BUS".
vm_hd_alias() { local a=${1//[:.]/-}; echo "hd-$a"; }

vm_hd_xml() {
    local file=$1 domain=$2 spec a managed gbus d b s f
    shift 2
    {
        echo "<domain type='kvm'><name>$domain</name><devices>"
        for spec in "$@"; do
            gbus=
            case $spec in *@*) gbus=${spec##*@}; spec=${spec%@*} ;; esac
            a=${spec%=no}
            managed=yes
            [ "$a" = "$spec" ] || managed=no
            IFS=':.' read -r d b s f <<<"$a"
            echo "  <hostdev mode='subsystem' type='pci' managed='$managed'><driver name='vfio'/>"
            echo "    <source><address domain='0x$d' bus='0x$b' slot='0x$s' function='0x$f'/></source>"
            [ -z "$gbus" ] || printf "    <address type='pci' domain='0x0000' bus='0x%02x' slot='0x00' function='0x0'/>\n" "$gbus"
            echo "    <alias name='$(vm_hd_alias "$a")'/>"
            echo "  </hostdev>"
        done
        echo "</devices></domain>"
    } >"$file"
}

# vm_hd_cleanup DOMAIN ADDR...: a daemon scenario's last word (its EXIT
# trap, once its QEMU is gone): if hostdevd runs, DOMAIN is destroyed and
# each ADDR still on vfio-pci reattached; then hostdevd is stopped and each
# ADDR still off its native driver or with a driver_override is rebound.
vm_hd_cleanup() {
    local domain=$1 a
    shift
    if [ -n "${VM_HD_PID:-}" ] && kill -0 "$VM_HD_PID" 2>/dev/null; then
        vm_hdctl destroy --no-progress "$domain" >/dev/null 2>&1 || true
        for a in "$@"; do
            [ "$(vm_driver "$a")" != vfio-pci ] ||
                vm_hdctl nodedev-reattach "$a" >/dev/null 2>&1 || true
        done
    fi
    vm_hd_stop
    vm_restore_native "$@"
}

# --- cgroup v2 device access ---
#
# vm_cgroup_new NAME: a fresh cgroup /sys/fs/cgroup/NAME (an old one of that
# name is removed first); prints its path.  vm_in_cgroup DIR CMD... runs CMD
# as a process of cgroup DIR.  vm_open PATH... opens each PATH read-write
# (as QEMU opens VFIO nodes; never creating it) and closes it again,
# printing "ok" or the errno name for each (space-separated);
# vm_open_in DIR PATH... does it from a process of cgroup DIR.
vm_cgroup_new() {
    local dir=/sys/fs/cgroup/$1
    [ ! -d "$dir" ] || rmdir "$dir"
    mkdir "$dir" && echo "$dir"
}

vm_in_cgroup() {
    local dir=$1
    shift
    (
        echo "$BASHPID" >"$dir/cgroup.procs"
        exec "$@"
    )
}

VM_OPEN_PY='import errno, os, sys
out = []
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(" ".join(out))'

vm_open() { python3 -c "$VM_OPEN_PY" "$@"; }

vm_open_in() {
    local dir=$1
    shift
    vm_in_cgroup "$dir" python3 -c "$VM_OPEN_PY" "$@"
}

# vm_node_copy NODE COPY: a character device COPY with NODE's device number,
# so that the number can still be opened (and refused) once NODE is gone.
vm_node_copy() {
    local maj min
    read -r maj min < <(stat -c '%Hr %Lr' "$1") || return 1
    rm -f "$2"
    mknod "$2" c "$maj" "$min"
}
