#!/usr/bin/env bash
# The uncompressed kernel (ELF vmlinux) inside a bzImage, for the nested
# guest of the VM tier:
#
#   extract-vmlinux.sh VMLINUZ CACHE_DIR
#
# Prints the path of the vmlinux (cached in CACHE_DIR, extracted again when
# VMLINUZ or this script changes).  QEMU boots such an ELF directly through
# its PVH entry point (the kernel needs CONFIG_PVH, which Debian's has), so
# the guest does not decompress itself: Debian's kernel is xz-compressed,
# and its decompression alone takes minutes under two levels of TCG.  It is
# the very same kernel, the payload the bzImage would unpack.
#
# Exit status 1 (and the reason on stderr) when no compressed ELF with a
# PVH entry is found; the caller then boots VMLINUZ itself.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
vmlinuz=$1
cache=$2
die() { echo "extract-vmlinux: $*" >&2; exit 1; }

[ -r "$vmlinuz" ] || die "cannot read $vmlinuz"
key=$( { stat -Lc '%n %s %Y' "$vmlinuz"; sha256sum "$here/extract-vmlinux.sh"; } |
       sha256sum | cut -c1-16)
out=$cache/vmlinux-$(basename "$vmlinuz")
if [ -f "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
    echo "$out"
    exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp "$cache/.vmlinux.XXXXXX")
trap 'rm -f "$tmp"' EXIT

# try MAGIC COMMAND...: decompress from each place MAGIC occurs until the
# result is an ELF file.
try() {
    local magic=$1 off
    shift
    command -v "$1" >/dev/null || return 1
    while IFS=: read -r off _; do
        tail -c "+$((off + 1))" "$vmlinuz" | "$@" >"$tmp" 2>/dev/null || true
        [ "$(head -c 4 "$tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] && return 0
    done < <(LC_ALL=C grep -aboP "$magic" "$vmlinuz")
    return 1
}
try '\xfd7zXZ\x00' xz -dc --single-stream ||
    try '\x28\xb5\x2f\xfd' zstd -dc ||
    try '\x1f\x8b\x08' gzip -dc ||
    die "no xz, zstd or gzip compressed ELF in $vmlinuz"

# XEN_ELFNOTE_PHYS32_ENTRY (18) in a "Xen" note: the PVH entry point.
if command -v readelf >/dev/null && ! readelf -n "$tmp" | grep 'Unknown note type: (0x00000012)' >/dev/null; then
    die "$vmlinuz has no PVH entry point (CONFIG_PVH)"
fi
mv "$tmp" "$out"
echo "$key" >"$out.key"
echo "$out"
