#!/bin/sh
# /init of the VM tier's initramfs (busybox sh, not bash).
#
# Loads the modules, mounts the test machine's root (9p "hostroot",
# read-only) on /newroot with tmpfs on /tmp, /run and /var/tmp and fresh
# proc, sys, dev and cgroup2, mounts the writable results share (9p
# "results") at the same path it has on the test machine, and runs the
# guest runner (tests/vm/guest-run.sh) inside a chroot.  Then saves dmesg
# and the runner's exit status in the results share and powers off.
# Everything it needs to know is in the results share's .vm/vm.conf,
# written by vm-run.sh.
# shellcheck shell=sh

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /proc /sys /dev
/bin/busybox --install -s
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

log() { echo "hd-vm-init: $*"; }

halt() {
    sync
    poweroff -f
    echo o >/proc/sysrq-trigger
    sleep 10
}

fail() {
    log "FATAL: $*"
    [ -d /results/.vm ] && echo "init: $*" >/results/.vm/init-error
    dmesg >/results/dmesg.txt 2>/dev/null
    halt
}

log "loading modules"
while read -r mod; do
    insmod "/lib/modules/$mod" && continue
    # netdevsim is built out of tree (build-netdevsim.sh): without it only
    # the vf-netdevsim scenario cannot run, and it says so.
    case $mod in
        netdevsim.ko) log "insmod $mod failed: no netdevsim" ;;
        *) fail "insmod $mod" ;;
    esac
done </lib/modules/order

opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts" results /results || fail "cannot mount the results share"
[ -f /results/.vm/vm.conf ] || fail "no .vm/vm.conf in the results share"
# shellcheck disable=SC1091
. /results/.vm/vm.conf
mount -t 9p -o "$opts,cache=loose,ro" hostroot /newroot || fail "cannot mount hostroot"

# Paths under /tmp or /run (a build dir in /tmp...) would vanish under the
# tmpfs mounts: keep them (directories or files) with bind mounts and put
# them back afterwards.  A path inside one kept before (a scenario file in a
# source dir under /tmp) comes back with it: its mount point could not be
# made in the read-only share anyway.
kept=""
for p in $HD_VM_KEEP; do
    case $p in
        /tmp/*|/run/*|/var/tmp/*) ;;
        *) continue ;;
    esac
    inside=""
    for q in $kept; do
        case $p in "$q"/*) inside=1 ;; esac
    done
    [ -n "$inside" ] || kept="$kept $p"
done

n=0
for p in $kept; do
    case $p in
        /tmp/*|/run/*|/var/tmp/*)
            n=$((n + 1))
            if [ -d "/newroot$p" ]; then mkdir -p "/keep/$n"; else : >"/keep/$n"; fi
            mount --bind "/newroot$p" "/keep/$n" || fail "bind $p"
            ;;
    esac
done

r=/newroot
mount -t tmpfs -o mode=1777 tmpfs $r/tmp || fail "tmpfs /tmp"
mount -t tmpfs -o mode=755 tmpfs $r/run || fail "tmpfs /run"
mount -t tmpfs -o mode=1777 tmpfs $r/var/tmp || fail "tmpfs /var/tmp"
mount -t proc proc $r/proc || fail "proc"
mount -t sysfs sysfs $r/sys || fail "sysfs"
mount -t cgroup2 cgroup2 $r/sys/fs/cgroup || log "no cgroup2"
mount -t devtmpfs devtmpfs $r/dev || fail "devtmpfs"
mkdir -p $r/dev/pts $r/dev/shm
ln -s /proc/self/fd $r/dev/fd
ln -s /proc/self/fd/0 $r/dev/stdin
ln -s /proc/self/fd/1 $r/dev/stdout
ln -s /proc/self/fd/2 $r/dev/stderr
mount -t devpts -o ptmxmode=0666 devpts $r/dev/pts || fail "devpts"
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm || fail "/dev/shm"

n=0
for p in $kept; do
    case $p in
        /tmp/*|/run/*|/var/tmp/*)
            n=$((n + 1))
            if [ -d "/keep/$n" ]; then
                mkdir -p "$r$p"
            else
                mkdir -p "$r${p%/*}" && : >"$r$p"
            fi
            mount --move "/keep/$n" "$r$p" || fail "move $p"
            ;;
    esac
done

mkdir -p "$r$HD_VM_RESULTS" 2>/dev/null
mount --move /results "$r$HD_VM_RESULTS" || fail "cannot mount results at $HD_VM_RESULTS"
res=$r$HD_VM_RESULTS

log "running $HD_VM_RUNNER"
chroot $r /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp LANG=C.UTF-8 TERM=dumb \
    HD_VM_CONF="$HD_VM_RESULTS/.vm/vm.conf" \
    /bin/bash "$HD_VM_RUNNER"
rc=$?
log "runner exited with $rc"
dmesg >"$res/dmesg.txt"
echo "$rc" >"$res/.vm/rc"
sync
umount "$res"
halt
