# Helpers for the VM tier's libvirt scenarios (issue 13; bash; source it
# after guest-lib.sh).  docs/vm-tier.rst, "libvirt on the real kernel".
#
#   . "$HD_SRCDIR/tests/vm/guest-lib.sh"
#   . "$HD_SRCDIR/tests/vm/guest-libvirt.sh"
#   vm_lv_begin NAME "$@"      # own mount namespace, writable libvirt dirs
#   flavour() {                # once per flavour
#       vm_lv_start "$1"        # its libvirtd, fresh state, same config
#       vm_virsh start ...
#   }
#   vm_lv_run flavour          # vm_lv_stop after each, then vm_done
#
# Up to three flavours run the same code: "stock", Debian's libvirtd
# (packages libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients),
# "patched", the libvirt that `make libvirt` builds into build-libvirt/
# (run from its build tree with its "run" script), and "debs", the Debian
# packages that `make libvirt-debs` builds into build-libvirt-debs/,
# installed with dpkg over stock's in the scenario's own overlays.  A
# flavour that is not there is recorded as a fact and left out.
# shellcheck shell=bash

VM_LV_PATCHED=${HD_LIBVIRT_BUILD:-$HD_SRCDIR/build-libvirt}
VM_LV_DEBS=${HD_LIBVIRT_DEBS:-$HD_SRCDIR/build-libvirt-debs}
# What the debs flavour installs: the packages of stock libvirt that
# scripts/debian-packages-vm.txt installs, and the library they share.
VM_LV_DEB_PACKAGES=(libvirt0 libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu)
VM_LV_URI=qemu:///system
VM_LV_STATE_DIRS=(/etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
                  /run/libvirt)

# vm_lv_enter ARGS...: run the scenario (again) in a mount namespace of its
# own, so that the writable state below vanishes with it.  Call it before
# anything else, with the scenario's arguments.
vm_lv_enter() {
    [ -z "${VM_LV_NAMESPACE:-}" ] || return 0
    VM_LV_NAMESPACE=1 exec unshare --mount --propagation private bash "$0" "$@"
}

# vm_lv_begin NAME ARGS...: a libvirt scenario's start (ARGS: the
# scenario's): its own mount namespace, the test devices (vm_discover),
# libvirt's state (vm_lv_init; a skip when it cannot run), vm_lv_stop at
# exit, and an empty directory VM_LV_DIR for its files (domain XML).
vm_lv_begin() {
    local name=$1
    shift
    vm_lv_enter "$@"
    vm_discover
    vm_lv_init "$name" || { echo "SKIP: $VM_LV_SKIP"; exit 77; }
    trap vm_lv_stop EXIT
    VM_LV_DIR=/tmp/$name
    rm -rf "$VM_LV_DIR"
    mkdir -p "$VM_LV_DIR"
}

# vm_lv_run FUNCTION: FUNCTION FLAVOUR for each flavour (vm_lv_flavours),
# each followed by vm_lv_stop; then the scenario's end (vm_done).
vm_lv_run() {
    local f
    for f in $(vm_lv_flavours); do
        "$1" "$f"
        vm_lv_stop
    done
    vm_done
}

# vm_lv_init NAME: libvirt's directories made writable in this namespace
# (the guest's root is the test machine's, read-only): an overlay with a
# tmpfs upper layer on /etc, /usr (for the debs flavour's dpkg), /var/lib,
# /var/cache and /var/log (libvirt's directories there do not exist
# without libvirt-daemon-system).  Logs go to NAME.FLAVOUR.* in the
# results.  Status 1 with VM_LV_SKIP set when stock libvirt is missing.
vm_lv_init() {
    local d upper
    VM_LV_NAME=$1
    VM_LV_SKIP=
    VM_LV_FLAVOUR=
    VM_LV_PID=
    VM_LV_LOG=${HD_VM_RESULTS:-/tmp}/$1.virsh.log
    : >"$VM_LV_LOG"
    if [ ! -x /usr/sbin/libvirtd ] || [ ! -x /usr/bin/virsh ] ||
        [ ! -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ]; then
        VM_LV_SKIP="stock libvirt is not installed (libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients)"
        return 1
    fi
    if [ ! -r "${HD_VM_NESTED_KERNEL:-}" ] || [ ! -r "${HD_VM_NESTED_INITRD:-}" ]; then
        VM_LV_SKIP="no kernel or nested initramfs for the nested guest (vm-run.sh sets them)"
        return 1
    fi
    upper=/run/hd-libvirt/overlay
    mkdir -p "$upper"
    mountpoint -q "$upper" || mount -t tmpfs tmpfs "$upper"
    modprobe overlay
    for d in /etc /usr /var/lib /var/cache /var/log; do
        mkdir -p "$upper$d/upper" "$upper$d/work"
        mount -t overlay overlay \
            -o "lowerdir=$d,upperdir=$upper$d/upper,workdir=$upper$d/work" "$d"
    done
    vm_lv_add_users
    vm_lv_write_config
}

# Debian's libvirtd looks up its built-in QEMU user and group
# (libvirt-qemu) before it reads qemu.conf; libvirt-daemon-system would
# create them.  They are added to /etc/passwd and /etc/group in this
# namespace's overlay of /etc.
vm_lv_add_users() {
    grep -q '^libvirt-qemu:' /etc/passwd ||
        echo 'libvirt-qemu:x:64055:64055:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin' \
            >>/etc/passwd
    grep -q '^libvirt-qemu:' /etc/group || echo 'libvirt-qemu:x:64055:' >>/etc/group
}

# The configuration both flavours run with: root's unix socket without
# authentication (no polkit in the guest); QEMU as root, no MAC driver (the
# chroot has neither SELinux nor AppArmor), no ownership changes (the
# kernel image lies on the read-only share), no private /dev for QEMU, its
# output in a plain file (no virtlogd); cgroup v2 as /init mounted it.
vm_lv_write_config() {
    cat >/etc/libvirt/libvirtd.conf <<EOF
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_filters = "1:hostdev 1:util.pci 1:qemu.qemu_hostdev 1:qemu.qemu_hotplug 1:qemu.qemu_process 3:util 3:rpc 3:object 3:event"
log_outputs = "1:file:/var/log/libvirt/libvirtd.log"
EOF
    cat >/etc/libvirt/qemu.conf <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
stdio_handler = "file"
EOF
}

# vm_lv_flavours: the flavours that can run, one a line; a missing patched
# build is recorded as a fact.
vm_lv_flavours() {
    echo stock
    if [ -x "$VM_LV_PATCHED/run" ] && [ -x "$VM_LV_PATCHED/src/libvirtd" ]; then
        echo patched
    else
        vm_fact "$VM_LV_NAME patched" "not built (no $VM_LV_PATCHED/run: make libvirt)" >&2
    fi
    if vm_lv_deb_files >/dev/null; then
        echo debs
    else
        vm_fact "$VM_LV_NAME debs" "not built (no packages in $VM_LV_DEBS: make libvirt-debs)" >&2
    fi
}

# vm_lv_deb_files: the packages of VM_LV_DEB_PACKAGES in VM_LV_DEBS, one
# path a line; status 1 if one is missing.
vm_lv_deb_files() {
    local pkg debs
    for pkg in "${VM_LV_DEB_PACKAGES[@]}"; do
        debs=("$VM_LV_DEBS/${pkg}_"*_amd64.deb)
        [ -e "${debs[0]}" ] || return 1
        echo "${debs[0]}"
    done
}

# vm_lv_install_debs: the debs flavour's packages installed with dpkg over
# stock's, as a user upgrades (its configuration files kept); they last as
# long as the scenario's overlays.  Status 1 (a failed check) if dpkg fails.
vm_lv_install_debs() {
    local t0 out rc=0
    [ -z "${VM_LV_DEBS_INSTALLED:-}" ] || return 0
    t0=$(vm_now_ms)
    # No service starts from a maintainer script here (no systemd in the VM)
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    # shellcheck disable=SC2046 # one path a line, no spaces
    out=$(dpkg -i --force-confdef --force-confold $(vm_lv_deb_files) 2>&1) || rc=$?
    echo "$out" >"${HD_VM_RESULTS:-/tmp}/$VM_LV_NAME.dpkg.log"
    vm_expect "$VM_LV_NAME debs: dpkg -i of the packages built" 0 "$rc"
    [ "$rc" -eq 0 ] || { tail -n 20 <<<"$out" >&2; return 1; }
    vm_lv_fact "dpkg -i (ms)" "$(($(vm_now_ms) - t0))"
    vm_lv_fact "installed" "$(dpkg-query -W -f='${Package} ${Version}, ' "${VM_LV_DEB_PACKAGES[@]}")"
    VM_LV_DEBS_INSTALLED=1
}

# vm_lv_daemon_cmd FLAVOUR: the command line of the flavour's libvirtd.
vm_lv_daemon_cmd() {
    case $1 in
        stock) echo /usr/sbin/libvirtd ;;
        patched) echo "$VM_LV_PATCHED/run $VM_LV_PATCHED/src/libvirtd" ;;
        debs) echo /usr/sbin/libvirtd ;;
    esac
}

# vm_virsh ARGS...: virsh of the running flavour on qemu:///system; the call,
# its status, time and output go to NAME.virsh.log; prints its output,
# returns its status.
vm_virsh() {
    local cmd=(/usr/bin/virsh)
    [ "$VM_LV_FLAVOUR" != patched ] || [ ! -x "$VM_LV_PATCHED/tools/virsh" ] ||
        cmd=("$VM_LV_PATCHED/run" "$VM_LV_PATCHED/tools/virsh")
    vm_run_logged "$VM_LV_LOG" "virsh($VM_LV_FLAVOUR)" "$@" -- \
        "${cmd[@]}" -c "$VM_LV_URI" "$@"
}

# vm_lv_clean_state FLAVOUR: libvirt's state of a previous run gone
# (configuration kept), but for the flavour's QEMU capabilities: probing
# them takes libvirtd about 30 s of TCG, so they are kept per flavour for
# the boot's later scenarios (VM_LV_CAPS_CACHE; libvirt checks them against
# its own and QEMU's binaries and probes again when they do not match).
VM_LV_CAPS_CACHE=/run/hd-libvirt-caps
vm_lv_clean_state() {
    local d
    for d in "${VM_LV_STATE_DIRS[@]}"; do
        [ "$d" = /etc/libvirt ] && continue
        rm -rf "$d"
        mkdir -p "$d"
    done
    rm -f /run/libvirtd.pid
    if [ -d "$VM_LV_CAPS_CACHE/$1" ]; then
        mkdir -p /var/cache/libvirt/qemu
        cp -a "$VM_LV_CAPS_CACHE/$1" /var/cache/libvirt/qemu/capabilities
    fi
}

# vm_lv_start FLAVOUR [fresh]: the flavour's libvirtd in the background
# (VM_LV_PID from its pid file), on fresh state unless the second argument
# is "keep" (a restart); waits until virsh gets an answer.  Status 1 (a
# failed check, and its log's end on stderr) if it did not come up within
# 120 s.
vm_lv_start() {
    local flavour=$1 mode=${2:-fresh} t0 i
    VM_LV_FLAVOUR=$flavour
    VM_LV_DAEMON_LOG=${HD_VM_RESULTS:-/tmp}/$VM_LV_NAME.$flavour.libvirtd.out
    [ "$flavour" != debs ] || vm_lv_install_debs || return 1
    [ "$mode" = keep ] || vm_lv_clean_state "$flavour"
    echo "[$(vm_now_ms) ms] --- libvirtd ($flavour) starts ($mode)" >>"$VM_LV_DAEMON_LOG"
    t0=$(vm_now_ms)
    # shellcheck disable=SC2046 # the command line is words
    setsid $(vm_lv_daemon_cmd "$flavour") </dev/null >>"$VM_LV_DAEMON_LOG" 2>&1 &
    VM_LV_JOB=$!
    for ((i = 0; i < 1200; i++)); do
        if /usr/bin/virsh -q -c "$VM_LV_URI" uri >/dev/null 2>&1; then
            VM_LV_PID=$(cat /run/libvirtd.pid)
            vm_fact "$VM_LV_NAME $flavour libvirtd answers after (ms)" "$(($(vm_now_ms) - t0))"
            return 0
        fi
        kill -0 "$VM_LV_JOB" 2>/dev/null || break
        sleep 0.1
    done
    vm_expect "libvirtd ($flavour) starts ($mode)" answers "not after $(($(vm_now_ms) - t0)) ms"
    tail -n 30 "$VM_LV_DAEMON_LOG" >&2
    return 1
}

# vm_lv_kill_daemon SIGNAL: signal the running libvirtd and wait until it is
# gone (SIGKILL after 20 s).
vm_lv_kill_daemon() {
    [ -n "${VM_LV_PID:-}" ] || return 0
    kill "-$1" "$VM_LV_PID" 2>/dev/null || true
    vm_wait_gone "$VM_LV_PID" 20 || kill -KILL "$VM_LV_PID" 2>/dev/null || true
    vm_wait_gone "$VM_LV_PID" 5 || true
    wait "$VM_LV_JOB" 2>/dev/null || true
    VM_LV_PID=
}

# vm_lv_qemu_pids: the pids of the QEMUs libvirt started (its pid files).
vm_lv_qemu_pids() {
    local f
    for f in /run/libvirt/qemu/*.pid; do
        [ -f "$f" ] && cat "$f" && echo
    done | grep -E '^[0-9]+$' || true
}

# vm_lv_stop: the flavour's end: its domains destroyed, the daemon stopped,
# any QEMU of it killed, libvirt's logs kept in the results, and every
# test device back on its native driver for the next flavour.
vm_lv_stop() {
    local dom pid f
    [ -n "$VM_LV_FLAVOUR" ] || return 0
    if [ -n "${VM_LV_PID:-}" ] && kill -0 "$VM_LV_PID" 2>/dev/null; then
        for dom in $(vm_virsh list --all --name 2>/dev/null); do
            vm_virsh destroy "$dom" >/dev/null 2>&1 || true
            vm_virsh undefine "$dom" >/dev/null 2>&1 || true
        done
    fi
    vm_lv_kill_daemon TERM
    for pid in $(vm_lv_qemu_pids); do
        vm_stop_pid "$pid"
    done
    if [ -d /var/cache/libvirt/qemu/capabilities ]; then
        rm -rf "${VM_LV_CAPS_CACHE:?}/$VM_LV_FLAVOUR"
        mkdir -p "$VM_LV_CAPS_CACHE"
        cp -a /var/cache/libvirt/qemu/capabilities "$VM_LV_CAPS_CACHE/$VM_LV_FLAVOUR"
    fi
    for f in /var/log/libvirt/libvirtd.log /var/log/libvirt/qemu/*.log; do
        [ -f "$f" ] || continue
        cp "$f" "${HD_VM_RESULTS:-/tmp}/$VM_LV_NAME.$VM_LV_FLAVOUR.${f##*/}"
    done
    vm_restore_native "${VM_DEVICES[@]}"
    VM_LV_FLAVOUR=
}

# The nested guest's kernel command line.  Two levels of TCG make its boot
# take minutes, so it skips what it does not need: the console is quiet,
# no read-only marking of kernel data and no W+X check of the page tables
# (rodata=off), no speculation mitigations, no crypto self-tests, audit or
# IPv6, no clocksource watchdog, and not the built-in initcalls that took
# longest in an initcall_debug boot and serve nothing here (module
# signature certificates, kprobe tracing, integrity measurement, the ACPI
# PM timer, TCP congestion control, packet sockets, zswap).  Hot-plug
# (ACPI and PCIe, both built in) stays.
VM_LV_CMDLINE="console=ttyS0 quiet panic=-1 rodata=off mitigations=off cryptomgr.notests"
VM_LV_CMDLINE+=" audit=0 ipv6.disable=1 tsc=reliable initcall_blacklist=load_system_certificate_list"
VM_LV_CMDLINE+=",init_kprobe_trace,crypto_algapi_init,init_evm,init_ima,init_encrypted"
VM_LV_CMDLINE+=",crypto_kdf108_init,init_acpi_pm_clocksource,cubictcp_register,packet_init"
VM_LV_CMDLINE+=",init_zswap"

# vm_lv_xml FILE DOMAIN ADDR...: a q35 domain (96 MiB, one vCPU) that boots
# the VM's kernel with the nested initramfs (tests/vm/nested-init.sh), its
# console in DOMAIN's console file (vm_lv_console), eight PCIe root ports,
# and a managed PCI <hostdev> per ADDR (alias ua-ADDR, vm_lv_alias).
vm_lv_xml() {
    local file=$1 domain=$2 a i
    shift 2
    {
        cat <<EOF
<domain type='qemu'>
  <name>$domain</name>
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$HD_VM_NESTED_KERNEL</kernel>
    <initrd>$HD_VM_NESTED_INITRD</initrd>
    <cmdline>$VM_LV_CMDLINE</cmdline>
  </os>
  <features><acpi/></features>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
EOF
        for ((i = 1; i <= 8; i++)); do
            echo "    <controller type='pci' model='pcie-root-port' index='$i'/>"
        done
        cat <<EOF
    <serial type='file'><source path='$(vm_lv_console "$domain")'/><target port='0'/></serial>
    <memballoon model='none'/>
EOF
        for a in "$@"; do vm_lv_hostdev "$a"; done
        echo "  </devices>"
        echo "</domain>"
    } >"$file"
}

vm_lv_alias() { local a=${1//[:.]/-}; echo "ua-$a"; }

# vm_lv_hostdev ADDR: a managed PCI <hostdev> of ADDR (vm_lv_alias names it).
vm_lv_hostdev() {
    local d b s f
    IFS=':.' read -r d b s f <<<"$1"
    cat <<EOF
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x$d' bus='0x$b' slot='0x$s' function='0x$f'/></source>
      <alias name='$(vm_lv_alias "$1")'/>
    </hostdev>
EOF
}

# vm_lv_console DOMAIN: the file the nested guest's console goes to.
vm_lv_console() {
    echo "${HD_VM_RESULTS:-/tmp}/$VM_LV_NAME.$VM_LV_FLAVOUR.$1.console"
}

# vm_lv_wait_ready DOMAIN SECONDS: wait until the nested guest said it runs
# (nested-init.sh); status 1 if it did not in time.
vm_lv_wait_ready() {
    local console i
    console=$(vm_lv_console "$1")
    for ((i = 0; i < $2 * 5; i++)); do
        grep -q '^hd-nested: ready' "$console" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# vm_lv_guest_pci DOMAIN: what the nested guest reported of its PCI devices
# beyond bus 0 (the assigned ones), one report after the other: "ADDR=ID
# ... | ...".
vm_lv_guest_pci() {
    awk '/^hd-nested: pci/ {
             out = ""
             for (i = 3; i <= NF; i++) if ($i !~ /^0000:00:/) out = out " " $i
             reports = reports (reports == "" ? "" : " |") (out == "" ? " none" : out)
         }
         END { print substr(reports, 2) }' "$(vm_lv_console "$1")"
}

# vm_lv_driverless ADDR...: how many of them have no driver.
vm_lv_driverless() {
    local a n=0
    for a in "$@"; do
        [ -n "$(vm_driver "$a")" ] || n=$((n + 1))
    done
    echo "$n"
}

# --- Steps, facts and checks ---
#
# The patched flavours' results (patched, debs) are the test; stock's are
# recorded as facts
# (facts.txt: "NAME FLAVOUR WHAT  VALUE").  A setup that does not work
# (a daemon that does not start, a domain that should start and does not)
# fails either flavour.

# vm_lv_fact WHAT VALUE...: a fact of the running flavour.
vm_lv_fact() {
    local what=$1
    shift
    vm_fact "$VM_LV_NAME $VM_LV_FLAVOUR $what" "$*"
}

# vm_lv_check WHAT EXPECTED ACTUAL: patched and debs: a check (vm_expect);
# stock: a fact, marked with what patched must do when it differs.
vm_lv_check() {
    if [ "$VM_LV_FLAVOUR" != stock ]; then
        vm_expect "$VM_LV_NAME $VM_LV_FLAVOUR: $1" "$2" "$3"
        vm_lv_fact "$1" "$3"
    elif [ "$2" = "$3" ]; then
        vm_lv_fact "$1" "$3"
    else
        vm_lv_fact "$1" "$3 (patched must: $2)"
    fi
}

# vm_lv_must WHAT COMMAND...: the setup step must succeed in any flavour;
# status 1 (and a failed check) if it does not.
vm_lv_must() {
    local what=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    vm_expect "$VM_LV_NAME $VM_LV_FLAVOUR: $what" 0 "$rc"
    [ "$rc" -eq 0 ] || { echo "$out"; return 1; }
}

# vm_lv_step LABEL ADDR...: after a step: the driver of each ADDR and of
# every test device a fact, and none of the test devices driverless
# (checked for patched).
vm_lv_step() {
    local label=$1
    shift
    vm_lv_fact "$label: drivers" "$(vm_drivers "$@")"
    vm_lv_check "$label: driverless test devices" 0 "$(vm_lv_driverless "${VM_DEVICES[@]}")"
}

# vm_lv_wait_drivers T0 SECONDS ADDR=DRIVER...: wait until each ADDR is on
# DRIVER, at most SECONDS.  Prints the milliseconds from T0 (vm_now_ms) to
# the start of the check that found them all there (a check reads sysfs
# once per device, slow under TCG: its start is when they were known to be
# there), or to the end of the wait; status 1 if they were not all there.
vm_lv_wait_drivers() {
    local t0=$1 secs=$2 start now spec ok
    shift 2
    start=$(vm_now_ms)
    while :; do
        now=$(vm_now_ms)
        ok=1
        for spec in "$@"; do
            [ "$(vm_driver "${spec%%=*}")" = "${spec#*=}" ] || { ok=; break; }
        done
        if [ -n "$ok" ]; then
            echo "$((now - t0))"
            return 0
        fi
        [ $((now - start)) -lt $((secs * 1000)) ] || break
        sleep 0.1
    done
    echo "$(($(vm_now_ms) - t0))"
    return 1
}

# vm_lv_in_domain DOMAIN ADDR: "yes" if DOMAIN's live XML still has ADDR's
# hostdev, else "no".
vm_lv_in_domain() {
    if vm_virsh dumpxml "$1" 2>/dev/null | grep "alias name='$(vm_lv_alias "$2")'" >/dev/null; then
        echo yes
    else
        echo no
    fi
}

# vm_lv_log_mark: remember where libvirtd's log ends; vm_lv_errors_since
# prints the error lines it got since (without their timestamps).
vm_lv_log_mark() {
    VM_LV_LOG_MARK=$(wc -l </var/log/libvirt/libvirtd.log 2>/dev/null || echo 0)
}
# vm_lv_log_time [--last] PATTERN: when libvirtd logged the first (the
# last) line since the mark that matches PATTERN (grep -E), in vm_now_ms's
# milliseconds; nothing if it did not.
vm_lv_log_time() {
    local pick="head" line
    [ "$1" != --last ] || { pick="tail"; shift; }
    line=$(tail -n "+$((VM_LV_LOG_MARK + 1))" /var/log/libvirt/libvirtd.log 2>/dev/null |
        grep -E "$1" | "$pick" -n 1)
    [ -n "$line" ] || return 0
    date -d "$(cut -d' ' -f1-2 <<<"$line" | sed 's/:$//')" +%s%3N
}

# vm_lv_destroy DOMAIN WHAT ADDR=DRIVER...: virsh destroy DOMAIN, then wait
# until every ADDR is on its DRIVER (WHAT names that in the facts): up to
# 60 s for the patched flavours, which may give a group back once QEMU's
# release is seen, 5 s for stock, which does all it does within the call.
# The call's time, the time until WHAT and libvirtd's own reattach time
# are facts.  Status 1 if the destroy fails.
vm_lv_destroy() {
    local dom=$1 what=$2 t0 t1 waited rc=0
    shift 2
    vm_lv_log_mark
    vm_mark "libvirt-destroy-$VM_LV_FLAVOUR"
    t0=$(vm_now_ms)
    vm_lv_must "destroy $dom" vm_virsh destroy "$dom" || return 1
    t1=$(vm_now_ms)
    waited=$(vm_lv_wait_drivers "$t0" "$([ "$VM_LV_FLAVOUR" != stock ] && echo 60 || echo 5)" \
        "$@") || rc=$?
    vm_lv_fact "destroy $dom (ms)" "$((t1 - t0))"
    vm_lv_fact "destroy to $what (ms)" \
        "$([ "$rc" -eq 0 ] && echo "$waited" || echo "not after $waited")"
    vm_lv_fact "libvirtd: QEMU killed to the last device reattached (ms)" "$(vm_lv_reattach_ms "$dom")"
}

# vm_lv_reattach_ms DOMAIN: libvirtd's own time from the kill of DOMAIN's
# QEMU (qemuProcessKill) to the last device it gave back to a host driver
# since the mark (every flavour logs "Removing PCI device ADDR from inactive
# list" once the host driver was probed: stock from virPCIDeviceReattach,
# patched from virHostdevReAttachFreePCIGroups, after its threads probed
# every group); nothing if either is missing.
vm_lv_reattach_ms() {
    local t0 t1
    t0=$(vm_lv_log_time "qemuProcessKill:.* name=$1 ")
    t1=$(vm_lv_log_time --last \
        "(virPCIDeviceReattach|virHostdevReAttach)[A-Za-z]*:.*Removing PCI device .* from inactive list")
    [ -z "$t0" ] || [ -z "$t1" ] || echo "$((t1 - t0))"
}

vm_lv_errors_since() {
    tail -n "+$((VM_LV_LOG_MARK + 1))" /var/log/libvirt/libvirtd.log 2>/dev/null |
        sed -n 's/^[^ ]* [^ ]* [0-9]*: error : //p'
}
