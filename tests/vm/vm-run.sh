#!/usr/bin/env bash
# Boot the VM tier's guest once and run guest scenarios in it.
#
#   vm-run.sh [--name NAME] [--results DIR] [--timeout SECONDS]
#             [--env NAME=VALUE]... SCENARIO...
#
# Boots Debian's kernel under qemu-system-x86_64 (TCG) with an emulated
# intel-iommu and the test devices (docs/vm-tier.rst), shares the test
# machine's root read-only with the guest, and runs each SCENARIO (a bash
# script) inside a chroot on it, one after the other (tests/vm/guest-run.sh).
# The results directory (default BUILDDIR/vm-results/NAME) gets
# console.log, dmesg.txt, summary.txt and each scenario's NAME.log/NAME.rc.
#
# Exit status: the guest runner's (0, 77 when every scenario skipped, else
# the first failing scenario's status); 77 when something the VM tier needs
# is missing; 1 when the VM did not finish (timeout, panic).  On failure the
# console log and dmesg go to stderr.
#
# Environment: HD_BUILDDIR, HD_SRCDIR (default: from this script's place and
# the current directory), HD_VM_KERNEL (a vmlinuz; default the newest
# /boot/vmlinuz-*), HD_VM_QEMU, HD_VM_SCENARIO_TIMEOUT (seconds per
# scenario, default 240).  HD_*, ASAN_OPTIONS, UBSAN_OPTIONS and G_DEBUG are
# passed on to the scenarios, with HD_VM_NESTED_KERNEL and
# HD_VM_NESTED_INITRD for a Linux guest inside the VM (mkinitramfs.sh
# --nested, extract-vmlinux.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
name=
results=
timeout=300
extra_env=()
scenarios=()

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 1
}

skip() {
    echo "SKIP: $*"
    echo "vm-run: skipped: $*" >&2
    exit 77
}

while [ $# -gt 0 ]; do
    case $1 in
        --name) name=$2; shift 2 ;;
        --results) results=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --env) extra_env+=("$2"); shift 2 ;;
        -h|--help) usage ;;
        -*) usage ;;
        *) scenarios+=("$(realpath "$1")"); shift ;;
    esac
done
[ ${#scenarios[@]} -gt 0 ] || usage
for s in "${scenarios[@]}"; do
    [ -f "$s" ] || { echo "vm-run: no scenario $s" >&2; exit 1; }
done
[ -n "$name" ] || name=$(basename "${scenarios[0]}" .sh)

srcdir=$(realpath "${HD_SRCDIR:-$here/../..}")
builddir=$(realpath "${HD_BUILDDIR:-$PWD}")

# --- What the VM tier needs; its absence is a skip with the reason. ---
qemu=${HD_VM_QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || skip "$qemu not found (apt-get install qemu-system-x86)"
kernel=${HD_VM_KERNEL:-}
if [ -z "$kernel" ]; then
    kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sort -V | tail -n1)
fi
[ -n "$kernel" ] || skip "no /boot/vmlinuz-* (apt-get install linux-image-amd64)"
[ -r "$kernel" ] || skip "$kernel is not readable (run as root)"
kver=${kernel##*/vmlinuz-}
[ -d "/lib/modules/$kver" ] || skip "no /lib/modules/$kver for $kernel"
command -v busybox >/dev/null || skip "busybox not found (apt-get install busybox-static)"
command -v cpio >/dev/null || skip "cpio not found (apt-get install cpio)"
command -v modprobe >/dev/null || skip "modprobe not found (apt-get install kmod)"
for m in vfio-pci 9pnet_virtio e1000e; do
    modprobe -S "$kver" --show-depends "$m" >/dev/null 2>&1 ||
        skip "kernel $kver has no module $m"
done

# --- The initramfs, cached in the build dir; and for scenarios that boot a
# Linux guest inside the VM, the nested guest's (HD_VM_NESTED_INITRD) and
# the same kernel uncompressed (HD_VM_NESTED_KERNEL; the bzImage itself if
# it cannot be extracted). ---
cache=$builddir/tests/vm/cache
image=$("$here/mkinitramfs.sh" "$kver" "$cache")
nested_image=$("$here/mkinitramfs.sh" --nested "$kver" "$cache")
nested_kernel=$("$here/extract-vmlinux.sh" "$kernel" "$cache") || nested_kernel=$(realpath "$kernel")

# --- The results directory: ours to empty. ---
[ -n "$results" ] || results=$builddir/vm-results/$name
mkdir -p "$results"
results=$(realpath "$results")
if [ -n "$(ls -A "$results")" ] && [ ! -d "$results/.vm" ]; then
    echo "vm-run: $results is not empty and not a results directory" >&2
    exit 1
fi
find "$results" -mindepth 1 -delete
mkdir "$results/.vm"

q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
    echo "export HD_VM_RESULTS=$(q "$results")"
    echo "HD_VM_RUNNER=$(q "$srcdir/tests/vm/guest-run.sh")"
    echo "HD_VM_KEEP=$(q "$(printf '%s\n' "$srcdir" "$builddir" "${scenarios[@]}" |
                          sort -u | tr '\n' ' ')")"
    echo "export HD_SRCDIR=$(q "$srcdir")"
    echo "export HD_BUILDDIR=$(q "$builddir")"
    echo "export HD_VM_NAME=$(q "$name")"
    echo "export HD_VM_NESTED_KERNEL=$(q "$nested_kernel")"
    echo "export HD_VM_NESTED_INITRD=$(q "$nested_image")"
    while IFS='=' read -r var _; do
        case $var in
            HD_SRCDIR|HD_BUILDDIR|HD_VM_RESULTS|HD_VM_RUNNER|HD_VM_KEEP|HD_VM_NAME) ;;
            HD_VM_NESTED_KERNEL|HD_VM_NESTED_INITRD) ;;
            HD_*|ASAN_OPTIONS|UBSAN_OPTIONS|G_DEBUG)
                echo "export $var=$(q "${!var}")" ;;
        esac
    done < <(env | grep -E '^[A-Z_][A-Z0-9_]*=' || true)
    for kv in "${extra_env[@]}"; do
        echo "export ${kv%%=*}=$(q "${kv#*=}")"
    done
} >"$results/.vm/vm.conf"
printf '%s\n' "${scenarios[@]}" >"$results/.vm/scenarios"

# --- The VM.  Device layout: docs/vm-tier.rst. ---
# no_timer_check: under TCG on a loaded host the kernel's check that the
# timer interrupt arrives through the remapped IO-APIC can time out and
# panic the boot ("timer doesn't work through Interrupt-remapped IO-APIC").
# shellcheck disable=SC2054 # commas are QEMU's
qemu_args=(
    -accel tcg -machine q35,kernel-irqchip=split -cpu max -m 2048 -smp 2
    -nodefaults -display none -monitor none -no-reboot
    -chardev "file,id=con,path=$results/console.log" -serial chardev:con
    -kernel "$kernel" -initrd "$image"
    -append "console=ttyS0 intel_iommu=on iommu=pt no_timer_check panic=-1 oops=panic quiet"
    -device intel-iommu,intremap=on,caching-mode=on
    # Two e1000e NICs, each on its own root port: one group each.
    -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2
    -device e1000e,id=nic1,bus=rp1
    -device pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x3
    -device e1000e,id=nic2,bus=rp2
    # A multifunction pair (GPU + audio): one group.
    -device pcie-root-port,id=rp3,bus=pcie.0,chassis=3,addr=0x4
    -device e1000e,id=mf0,bus=rp3,addr=0.0,multifunction=on
    -device e1000e,id=mf1,bus=rp3,addr=0.1
    # Two e1000 behind a PCIe-to-PCI bridge: one group with the bridge.
    -device pcie-root-port,id=rp4,bus=pcie.0,chassis=4,addr=0x5
    -device pcie-pci-bridge,id=pbr,bus=rp4
    -device e1000,id=br0,bus=pbr,addr=0x1
    -device e1000,id=br1,bus=pbr,addr=0x2
    # The shares: the test machine's root (read-only) and the results.
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,bus=pcie.0,addr=0x10
    -fsdev "local,id=results,path=$results,security_model=none,multidevs=remap"
    -device virtio-9p-pci,fsdev=results,mount_tag=results,bus=pcie.0,addr=0x11
)

qpid=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    if [ -n "$qpid" ]; then
        kill -TERM "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "vm-run: booting $kernel (TCG), timeout ${timeout}s, results in $results"
start=$SECONDS
# --foreground keeps QEMU in our process group, so that whoever kills the
# group (meson on timeout) kills QEMU too.
timeout --foreground -k 10 "$timeout" "$qemu" "${qemu_args[@]}" \
    </dev/null >"$results/qemu.log" 2>&1 &
qpid=$!
set +e
wait "$qpid"
qrc=$?
set -e
qpid=
elapsed=$((SECONDS - start))

rc=1
if [ -f "$results/.vm/rc" ]; then
    rc=$(cat "$results/.vm/rc")
    echo "vm-run: guest finished in ${elapsed}s with status $rc"
elif [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
    echo "vm-run: the VM timed out after ${timeout}s" >&2
elif [ -f "$results/.vm/init-error" ]; then
    echo "vm-run: guest init failed: $(cat "$results/.vm/init-error")" >&2
else
    echo "vm-run: the VM stopped (QEMU status $qrc) before the guest finished" >&2
fi
if [ -s "$results/summary.txt" ]; then
    while read -r sname src secs; do
        case $src in
            0) verdict=PASS ;;
            77) verdict=SKIP ;;
            *) verdict="FAIL ($src)" ;;
        esac
        echo "vm-run: $sname: $verdict in ${secs}s"
    done <"$results/summary.txt"
fi
if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    for f in qemu.log console.log dmesg.txt; do
        [ -s "$results/$f" ] || continue
        echo "----- $results/$f -----" >&2
        cat "$results/$f" >&2
    done
fi
exit "$rc"
