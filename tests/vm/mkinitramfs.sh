#!/usr/bin/env bash
# Build the VM tier's initramfs: busybox, the guest init and the kernel
# modules the guest needs before it can mount the host's root over 9p.
#
#   mkinitramfs.sh [--nested] KERNEL_VERSION CACHE_DIR
#
# Prints the path of the image.  The image is cached in CACHE_DIR and built
# again only when an input changes (kernel version, module files, busybox,
# the init script, this script).  netdevsim, when the kernel has none, comes
# from build-netdevsim.sh (cached in CACHE_DIR/netdevsim-KERNEL_VERSION).
#
# --nested: the image of a Linux guest *inside* the VM (a nested QEMU boots
# the same kernel with it): busybox and nested-init.sh, no modules at all,
# so that the nested guest stays as small and quick to boot as it can.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
nested=
if [ "${1:-}" = --nested ]; then
    nested=1
    shift
fi
kver=$1
cache=$2
moddir=/lib/modules/$kver

die() { echo "mkinitramfs: $*" >&2; exit 1; }

# Top-level modules, loaded in dependency order.  '?' marks a module that
# may be built in or absent (vfio_virqfd was merged into vfio in 6.2).
modules=(irqbypass vfio '?vfio_virqfd' vfio_iommu_type1 vfio-pci-core vfio-pci
         e1000e e1000 '?netdevsim'
         virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         '?netfs' '?fscache' 9pnet 9pnet_virtio 9p)
init=$here/guest-init.sh
image=$cache/initramfs-$kver.img
if [ -n "$nested" ]; then
    modules=()
    init=$here/nested-init.sh
    image=$cache/nested-initramfs.img
fi

busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox not found"
[ -d "$moddir" ] || die "$moddir not found"
command -v modprobe >/dev/null || die "modprobe (kmod) not found"
command -v cpio >/dev/null || die "cpio not found"

# Resolve every module to its files, dependencies first, without duplicates.
files=()
declare -A seen=()
add_module() {
    local spec=$1 name=${1#\?} out verb path
    if ! out=$(modprobe -S "$kver" --show-depends "$name" 2>&1); then
        [ "$spec" != "$name" ] && return 0
        die "module $name: $out"
    fi
    while read -r verb path _; do
        [ "$verb" = insmod ] || continue        # "builtin NAME": nothing to load
        [ -n "${seen[$path]:-}" ] && continue
        seen[$path]=1
        files+=("$path")
    done <<<"$out"
}
for spec in "${modules[@]}"; do
    add_module "$spec"
done

# A kernel without netdevsim (Debian's) gets one built from linux-source
# (build-netdevsim.sh); without the source or headers, or if the build
# fails, the image has none and the vf-netdevsim scenario says why.
if [ -z "$nested" ] && ! modprobe -S "$kver" --show-depends netdevsim >/dev/null 2>&1; then
    if ko=$("$here/build-netdevsim.sh" "$kver" "$cache/netdevsim-$kver"); then
        for dep in $(modinfo -F depends "$ko" | tr ',' ' '); do
            add_module "$dep"
        done
        files+=("$ko")
    else
        echo "mkinitramfs: no netdevsim: ${ko:-see $cache/netdevsim-$kver/build.log}" >&2
    fi
fi

# The cache key covers every input.
key=$( {
    echo "$kver"
    for f in "${files[@]}"; do stat -Lc '%n %s %Y' "$f"; done
    sha256sum "$busybox" "$init" "$0"
} | sha256sum | cut -c1-16)
if [ -f "$image" ] && [ "$(cat "$image.key" 2>/dev/null)" = "$key" ]; then
    echo "$image"
    exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,newroot,results,keep,lib/modules}

cp "$busybox" "$root/bin/busybox"
# A dynamically linked busybox (Debian's "busybox" package) needs its libraries.
if ldd "$busybox" >/dev/null 2>&1; then
    ldd "$busybox" | grep -o '/[^ ]*' | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
fi
ln -s busybox "$root/bin/sh"
install -m 0755 "$init" "$root/init"

# Modules, decompressed (busybox insmod may not decompress).
for f in "${files[@]}"; do
    base=$(basename "$f")
    case $base in
        *.ko.xz) xz -dc "$f" >"$root/lib/modules/${base%.xz}"; base=${base%.xz} ;;
        *.ko.zst) zstd -qdc "$f" >"$root/lib/modules/${base%.zst}"; base=${base%.zst} ;;
        *.ko.gz) gzip -dc "$f" >"$root/lib/modules/${base%.gz}"; base=${base%.gz} ;;
        *.ko) cp "$f" "$root/lib/modules/$base" ;;
        *) die "unexpected module file $f" ;;
    esac
    echo "$base" >>"$root/lib/modules/order"
done

(cd "$root" && find . -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc --quiet -R 0:0) | gzip -1 >"$tmp/image"
mv "$tmp/image" "$image"
echo "$key" >"$image.key"
echo "$image"
