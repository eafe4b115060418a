#!/usr/bin/env bash
# Build the netdevsim module out of tree for the VM tier's kernel.
#
#   build-netdevsim.sh KERNEL_VERSION OUT_DIR
#
# Debian's kernels are built without CONFIG_NETDEVSIM; its source is in
# linux-source-X.Y (/usr/src/linux-source-X.Y.tar.xz), and the kernel's
# build tree in linux-headers-KERNEL_VERSION.  Only drivers/net/netdevsim/
# is extracted and compiled (with CONFIG_NETDEVSIM=m; the kernel's own
# configuration decides which optional parts go in).  No stubs, no extra
# flags: Debian 12's config has every option and module netdevsim uses.
#
# On success prints the path of netdevsim.ko.  Exit status 77 when the
# source or the headers are missing, with the reason on stdout and in
# OUT_DIR/reason (the vf-netdevsim scenario reads it); 1 when the build
# fails (log in OUT_DIR/build.log).  The module is cached in OUT_DIR and
# built again only when an input changes (the source tarball, the headers'
# Module.symvers and .config, this script).
set -euo pipefail

kver=$1
out=$2
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/reason"

unavailable() {
    echo "$*" | tee "$out/reason"
    exit 77
}

# 6.1.0-56-amd64 -> 6.1
series=$(echo "$kver" | cut -d. -f1,2)
headers=/usr/src/linux-headers-$kver
[ -f "$headers/Module.symvers" ] ||
    unavailable "no kernel headers $headers (apt-get install linux-headers-$kver)"
tarball=
for t in /usr/src/linux-source-"$series".tar.{xz,bz2,gz,zst}; do
    [ -f "$t" ] && { tarball=$t; break; }
done
[ -n "$tarball" ] ||
    unavailable "no /usr/src/linux-source-$series.tar.* (apt-get install linux-source-$series)"

key=$( {
    echo "$kver"
    stat -Lc '%n %s %Y' "$tarball" "$headers/Module.symvers" "$headers/.config"
    sha256sum "$0"
} | sha256sum | cut -c1-16)
ko=$out/netdevsim.ko
if [ -f "$ko" ] && [ "$(cat "$out/key" 2>/dev/null)" = "$key" ]; then
    echo "$ko"
    exit 0
fi
rm -f "$ko" "$out/key"

tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log=$out/build.log
{
    echo "kernel $kver, headers $headers, source $tarball"
    # Versions of the packages, for the record (linux-source may be a
    # slightly different upload than the image; the build and the load say
    # whether that matters).
    dpkg-query -W -f='${Package} ${Version}\n' "linux-image-$kver" \
        "linux-headers-$kver" "linux-source-$series" 2>/dev/null || true
} >"$log"

start=$SECONDS
# Extract only the driver (tar still has to decompress the whole tarball).
if ! tar -xf "$tarball" -C "$tmp" --strip-components=3 --wildcards \
        "linux-source-$series/drivers/net/netdevsim/*" >>"$log" 2>&1; then
    echo "build-netdevsim: cannot extract netdevsim from $tarball (log: $log)" >&2
    exit 1
fi
jobs=$(nproc 2>/dev/null || echo 1)
if ! make -j"$jobs" -C "$headers" M="$tmp/netdevsim" CONFIG_NETDEVSIM=m modules \
        >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "build-netdevsim: the build failed (log: $log)" >&2
    exit 1
fi
vermagic=$(modinfo -F vermagic "$tmp/netdevsim/netdevsim.ko" | cut -d' ' -f1)
if [ "$vermagic" != "$kver" ]; then
    echo "build-netdevsim: vermagic $vermagic, not $kver" | tee -a "$log" >&2
    exit 1
fi
echo "built in $((SECONDS - start)) s, vermagic $vermagic," \
     "depends: $(modinfo -F depends "$tmp/netdevsim/netdevsim.ko")" >>"$log"
# Debian's modules carry no debug info either: 5.5 MB -> about 0.4 MB.
strip --strip-debug -o "$ko" "$tmp/netdevsim/netdevsim.ko"
echo "$key" >"$out/key"
echo "$ko"
