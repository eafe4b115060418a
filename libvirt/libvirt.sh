#!/usr/bin/env bash
# Debian 12's libvirt with hostdev's patch series (docs/libvirt.rst).
#
#   libvirt/libvirt.sh deps          deb-src entry, build dependencies, syntax-check tools
#   libvirt/libvirt.sh source        Debian's source package, unpacked (Debian's patches applied)
#   libvirt/libvirt.sh tree          git tree: the source as first commit, the series on top
#   libvirt/libvirt.sh build         minimal build into build-libvirt/ (Debian's paths)
#   libvirt/libvirt.sh test          libvirt's test suite
#   libvirt/libvirt.sh syntax-check  libvirt's syntax-check suite
#   libvirt/libvirt.sh all           all of the above, in that order (make libvirt)
#   libvirt/libvirt.sh verify        libvirt/patches is what format-patch writes for it
#   libvirt/libvirt.sh export        the tree's branch back into libvirt/patches (format-patch)
#   libvirt/libvirt.sh debs          Debian packages of the patched libvirt (make libvirt-debs)
#   libvirt/libvirt.sh debs-chroot   those packages installed with apt into a fresh Debian 12 chroot
#
# Every step is cheap when there is nothing to do, so a second `make libvirt`
# with the same series only runs the tests.  Paths (relative to the hostdev
# tree, or absolute) can be changed through the environment:
#   LIBVIRT_SRC    git tree and source package cache   (build-libvirt-src)
#   LIBVIRT_BUILD  meson build directory               (build-libvirt)
#   LIBVIRT_DEBS   where `debs` builds and leaves .debs (build-libvirt-debs)
#   LIBVIRT_JOBS   parallel compile jobs               (2)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

readonly version=9.0.0
readonly debian_version=9.0.0-4+deb12u2
readonly suffix=+hostdev1
readonly patches="$root/libvirt/patches"
# A directory relative to the hostdev tree, or an absolute one.
in_root() { case $1 in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }

readonly src=$(in_root "${LIBVIRT_SRC:-build-libvirt-src}")
readonly build=$(in_root "${LIBVIRT_BUILD:-build-libvirt}")
readonly debs=$(in_root "${LIBVIRT_DEBS:-build-libvirt-debs}")
readonly jobs=${LIBVIRT_JOBS:-2}
readonly pkgdir="$src/package"      # apt-get source output
readonly tree="$src/libvirt"        # the git tree
readonly branch=hostdev             # the series, on top of tag `debian`
readonly stamp_name=hostdev-applied # in the tree's .git: series hash and HEAD

# The libvirt build shares the machine with other work.
readonly nice=(nice -n 10)

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)

say() { echo "libvirt: $*"; }
die() { echo "libvirt: error: $*" >&2; exit 1; }

apt_get() {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=900 "$@"
}

# Seconds since the epoch, with decimals, for the timings printed.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- deps -------------------------------------------------------------------

# Debian 12 images often come with binary sources only (Types: deb in
# debian.sources).  Add the matching deb-src entries in a file of our own,
# leaving the system's file untouched.
libvirt_source_known() {
    # Not `apt-cache | grep -q`: under pipefail, grep's early exit kills
    # apt-cache with SIGPIPE and the pipeline fails at random.
    local record
    record=$(apt-cache showsrc libvirt 2>/dev/null) || return 1
    grep -qx 'Package: libvirt' <<<"$record"
}

ensure_deb_src() {
    libvirt_source_known && return 0
    local sources=/etc/apt/sources.list.d/debian.sources
    local ours=/etc/apt/sources.list.d/debian-src.sources
    [ -f "$sources" ] || die "no deb-src entry for libvirt and no $sources to derive one from"
    say "adding deb-src entries ($ours, from $sources)"
    sed -n 's/^Types: deb$/Types: deb-src/; p' "$sources" | "${sudo[@]}" tee "$ours" >/dev/null
    local log
    log=$(apt_get update 2>&1) || { echo "$log" >&2; die "apt-get update failed"; }
    libvirt_source_known || {
        echo "$log" >&2
        die "apt still has no source for libvirt after adding $ours"
    }
}

# The tools of this script and of syntax-check are in
# scripts/debian-packages-libvirt.txt; libvirt's build dependencies are the
# source package's.
deps() {
    "$root/scripts/install-deps.sh" libvirt
    fetch_source
    if dpkg-checkbuilddeps "$(source_dir)/debian/control" 2>/dev/null; then
        return 0
    fi
    local t0
    t0=$(now)
    say "installing libvirt's build dependencies (apt-get build-dep libvirt=$debian_version)"
    apt_get build-dep -y -qq "libvirt=$debian_version" >/dev/null
    say "build dependencies installed in $(elapsed "$t0") s"
}

# --- source -----------------------------------------------------------------

source_dir() { echo "$pkgdir/libvirt-$version"; }

fetch_source() {
    local dsc="$pkgdir/libvirt_$debian_version.dsc"
    if [ -f "$pkgdir/.unpacked" ] && [ -d "$(source_dir)" ]; then
        return 0
    fi
    ensure_deb_src
    rm -rf "$pkgdir"
    mkdir -p "$pkgdir"
    say "fetching Debian's source package libvirt $debian_version"
    (cd "$pkgdir" && apt-get source -qq "libvirt=$debian_version" >/dev/null 2>fetch.log) || {
        cat "$pkgdir/fetch.log" >&2
        die "apt-get source libvirt=$debian_version failed"
    }
    [ -f "$dsc" ] && [ -d "$(source_dir)" ] || die "apt-get source left no $(source_dir)"
    touch "$pkgdir/.unpacked"
}

# --- tree -------------------------------------------------------------------

series_files() {
    [ -f "$patches/series" ] || die "no $patches/series"
    { grep -v '^\s*\(#\|$\)' "$patches/series" || true; } | sed "s|^|$patches/|"
}

series_hash() {
    # The list and the content of every patch in it.
    { cat "$patches/series"; series_files | xargs -r cat; } | sha256sum | cut -d' ' -f1
}

# Commits of the tree are made with fixed dates and the identity of the
# series' author (the hostdev repository's, or a stand-in, for a series yet
# to be written), so that the same series always gives the same commits on
# any machine, and `export` writes identical files.
identity() {
    local name="" email="" first
    first=$(series_files | sed -n 1p)
    if [ -n "$first" ]; then
        name=$(git mailinfo /dev/null /dev/null <"$first" | sed -n 's/^Author: //p')
        email=$(git mailinfo /dev/null /dev/null <"$first" | sed -n 's/^Email: //p')
    fi
    [ -n "$name" ] || name=$(git -C "$root" config user.name || echo "hostdev build")
    [ -n "$email" ] || email=$(git -C "$root" config user.email || echo "hostdev@localhost")
    git -C "$tree" config user.name "$name"
    git -C "$tree" config user.email "$email"
}

import_source() {
    local from
    from=$(source_dir)
    say "importing $from as the first commit of $tree"
    rm -rf "$tree"
    mkdir -p "$tree"
    # Debian's packaging and quilt's bookkeeping are not part of libvirt's
    # tree (syntax-check would look at them); `debs` takes debian/ from the
    # source package.
    tar -C "$from" --exclude=./debian --exclude=./.pc -cf - . | tar -C "$tree" -xf -
    # The package's date (its changelog) as the commits' date.
    local date
    date=$(dpkg-parsechangelog -l "$from/debian/changelog" -S Date)
    local -x GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date"
    # src/keycodemapdb is a git submodule upstream, which syntax-check does
    # not look into (it lists the regular files of HEAD): it becomes one here
    # too, a repository of its own recorded as a gitlink.
    local sub="$tree/src/keycodemapdb"
    git -C "$sub" init -q
    git -C "$sub" add -A
    git -C "$sub" -c user.name=hostdev -c user.email=hostdev@localhost commit -q \
        -m "keycodemapdb as shipped in libvirt $version"
    git -C "$tree" init -q -b "$branch"
    identity
    git -C "$tree" add -A -- . ':!src/keycodemapdb'
    git -C "$tree" update-index --add \
        --cacheinfo "160000,$(git -C "$sub" rev-parse HEAD),src/keycodemapdb"
    git -C "$tree" commit -q \
        -m "Debian's libvirt $debian_version" \
        -m "The source package as 'apt-get source libvirt=$debian_version' unpacks it,
with Debian's patches applied, without debian/ and .pc/."
    git -C "$tree" tag debian
}

# The cover letter is written from the branch description; a fresh tree gets
# the description back from the exported cover letter: its subject (without
# "[PATCH 0/N] ", unfolded) and its body up to format-patch's shortlog.
restore_description() {
    local cover="$patches/0000-cover-letter.patch"
    [ -f "$cover" ] || return 0
    local name
    name=$(git -C "$tree" config user.name)
    awk -v shortlog="$name (" '
        state == 0 && /^Subject: / { sub(/^Subject: (\[[^]]*\] )?/, ""); subject = $0; state = 1; next }
        state == 1 && /^ / { subject = subject $0; next }
        state == 1 && /^$/ { state = 2; next }
        state == 1 { next }
        state == 2 && index($0, shortlog) == 1 && /\([0-9]+\):$/ { state = 3; next }
        state == 2 { body[n++] = $0 }
        END {
            while (n > 0 && body[n - 1] == "") n--
            print subject; print ""
            for (i = 0; i < n; i++) print body[i]
        }' "$cover" >"$tree/.git/hostdev-description"
    git -C "$tree" config "branch.$branch.description" "$(cat "$tree/.git/hostdev-description")"
}

tree_state() {
    local f="$tree/.git/$stamp_name"
    [ -f "$f" ] && cat "$f"
}

apply_series() {
    local files
    mapfile -t files < <(series_files)
    git -C "$tree" checkout -q -f -B "$branch" debian
    if [ ${#files[@]} -gt 0 ]; then
        say "applying ${#files[@]} patches (git am)"
        git -C "$tree" am -q --committer-date-is-author-date "${files[@]}" || {
            git -C "$tree" am --abort || true
            # The tree is the base again: the next run applies afresh.
            echo "failed $(git -C "$tree" rev-parse HEAD)" >"$tree/.git/$stamp_name"
            die "the series does not apply to libvirt $debian_version"
        }
    fi
    echo "$(series_hash) $(git -C "$tree" rev-parse HEAD)" >"$tree/.git/$stamp_name"
    restore_description
}

tree() {
    fetch_source
    if [ ! -d "$tree/.git" ]; then
        import_source
        apply_series
        return 0
    fi
    local want head recorded
    want=$(series_hash)
    head=$(git -C "$tree" rev-parse HEAD)
    recorded=$(tree_state || true)
    if [ "$recorded" = "$want $head" ] && git -C "$tree" diff --quiet HEAD; then
        return 0  # the tree is the series
    fi
    # The tree is also where the series is edited: never throw away work
    # that was not exported to libvirt/patches.
    if [ "${recorded#* }" != "$head" ] || ! git -C "$tree" diff --quiet HEAD; then
        if [ "${LIBVIRT_TREE:-}" = keep ]; then
            say "building the tree as it is (LIBVIRT_TREE=keep), not libvirt/patches"
            return 0
        fi
        die "$tree has commits or changes that are not in libvirt/patches:
  export them:  libvirt/libvirt.sh export
  build as is:  LIBVIRT_TREE=keep make libvirt
  drop them:    git -C $tree reset --hard ${recorded#* }"
    fi
    say "libvirt/patches changed: applying the series again"
    apply_series
}

# --- build ------------------------------------------------------------------

# Debian's paths and QEMU settings (debian/rules, dh_auto_configure) so the
# daemons built here are a drop-in for Debian's: same config files, same
# sockets, same state.  Only what passthrough with the QEMU driver needs is
# built; whatever is not listed stays as libvirt's default ("auto") unless
# switched off here.
meson_options() {
    local multiarch
    multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
    cat <<EOF
--prefix=/usr
--sysconfdir=/etc
--localstatedir=/var
--libdir=lib/$multiarch
--libexecdir=/usr/lib/libvirt
-Drunstatedir=/run
-Dpackager=Debian
-Dpackager_version=$debian_version$suffix
-Dno_git=true
-Ddocs=disabled
-Dtests=enabled
-Dexpensive_tests=disabled
-Ddriver_qemu=enabled
-Dqemu_user=libvirt-qemu
-Dqemu_group=libvirt-qemu
-Dqemu_moddir=/usr/lib/$multiarch/qemu
-Dqemu_datadir=/usr/share/qemu
-Ddriver_libvirtd=enabled
-Ddriver_remote=enabled
-Dremote_default_mode=legacy
-Ddriver_test=enabled
-Dyajl=enabled
-Dudev=enabled
-Dpciaccess=enabled
-Dlibnl=enabled
-Dcapng=enabled
-Dreadline=enabled
-Dselinux=enabled
-Dsecdriver_selinux=enabled
-Dselinux_mount=/sys/fs/selinux
-Dapparmor=enabled
-Dsecdriver_apparmor=enabled
-Dapparmor_profiles=disabled
-Dinit_script=none
-Dbash_completion=disabled
-Ddriver_bhyve=disabled
-Ddriver_ch=disabled
-Ddriver_esx=disabled
-Ddriver_hyperv=disabled
-Ddriver_interface=disabled
-Ddriver_libxl=disabled
-Ddriver_lxc=disabled
-Ddriver_network=disabled
-Ddriver_openvz=disabled
-Ddriver_secrets=enabled
-Ddriver_vbox=disabled
-Ddriver_vmware=disabled
-Ddriver_vz=disabled
-Dstorage_dir=disabled
-Dstorage_disk=disabled
-Dstorage_fs=disabled
-Dstorage_gluster=disabled
-Dstorage_iscsi=disabled
-Dstorage_iscsi_direct=disabled
-Dstorage_lvm=disabled
-Dstorage_mpath=disabled
-Dstorage_rbd=disabled
-Dstorage_scsi=disabled
-Dstorage_vstorage=disabled
-Dstorage_zfs=disabled
-Dattr=disabled
-Daudit=disabled
-Dblkid=disabled
-Dcurl=disabled
-Ddtrace=disabled
-Dfirewalld=disabled
-Dfirewalld_zone=disabled
-Dfuse=disabled
-Dglusterfs=disabled
-Dhost_validate=disabled
-Dlibiscsi=disabled
-Dlibpcap=disabled
-Dlibssh=disabled
-Dlibssh2=disabled
-Dlogin_shell=disabled
-Dnetcf=disabled
-Dnss=disabled
-Dnumactl=disabled
-Dnumad=disabled
-Dopenwsman=disabled
-Dpolkit=disabled
-Dsanlock=disabled
-Dsasl=disabled
-Dwireshark_dissector=disabled
EOF
}

build() {
    tree
    local opts_hash
    # meson looks for flake8 when it configures: its arrival must configure
    # again, or syntax-check would go on skipping it.
    opts_hash=$({ meson_options; command -v flake8 || true; } | sha256sum | cut -d' ' -f1)
    if [ ! -f "$build/build.ninja" ] || [ "$(cat "$build/.hostdev-options" 2>/dev/null)" != "$opts_hash" ]; then
        local opts
        mapfile -t opts < <(meson_options)
        # Configuring again keeps what was built: ninja rebuilds what changed.
        [ -f "$build/build.ninja" ] && opts+=(--reconfigure)
        say "configuring $build"
        "${nice[@]}" meson setup "${opts[@]}" "$build" "$tree" >"$src/meson-setup.log" 2>&1 || {
            tail -n 40 "$src/meson-setup.log" >&2
            die "meson setup failed (whole log: $src/meson-setup.log)"
        }
        echo "$opts_hash" >"$build/.hostdev-options"
    fi
    local t0
    t0=$(now)
    say "building ($jobs jobs, nice)"
    "${nice[@]}" meson compile -C "$build" -j "$jobs" >"$build/hostdev-compile.log" 2>&1 || {
        grep -B2 -A12 -m5 'error' "$build/hostdev-compile.log" >&2 ||
            tail -n 40 "$build/hostdev-compile.log" >&2
        die "build failed (whole log: $build/hostdev-compile.log)"
    }
    say "built in $(elapsed "$t0") s"
}

# --- test -------------------------------------------------------------------

run_suite() {
    local what=$1
    shift
    [ -f "$build/build.ninja" ] || die "$build is not configured: run libvirt/libvirt.sh build"
    local t0
    t0=$(now)
    "${nice[@]}" meson test -C "$build" --no-rebuild --print-errorlogs \
        --num-processes "$jobs" "$@" || die "$what failed (log: $build/meson-logs/testlog.txt)"
    say "$what passed in $(elapsed "$t0") s"
}

run_tests() { run_suite "libvirt's tests" --no-suite syntax-check; }
run_syntax_check() {
    [ -d "$tree/.git" ] || die "syntax-check needs the git tree $tree"
    run_suite "syntax-check" --suite syntax-check
}

# --- export -----------------------------------------------------------------

# format-patch of the branch, with its cover letter and the list, into $1.
format_series() {
    local out=$1
    # The cover letter's date is the series' last commit's, not the time
    # of the export, so the same series exports to the same files.
    GIT_COMMITTER_DATE=$(git -C "$tree" log -1 --format=%cD "$branch") \
        git -C "$tree" format-patch -q --cover-letter --cover-from-description=subject \
        --no-signature -o "$out" debian.."$branch"
    (cd "$out" && ls ./*.patch | sed 's|^\./||' | grep -v '^0000-cover-letter.patch$' >series)
}

export_series() {
    [ -d "$tree/.git" ] || die "no git tree at $tree"
    git -C "$tree" diff --quiet HEAD || die "$tree has uncommitted changes: commit them first"
    # Commits made with --amend or rebased have a committer date of their
    # own: make it the author date again, as `tree` makes it (git am
    # --committer-date-is-author-date), so that both give the same commits
    git -C "$tree" rebase -q --committer-date-is-author-date debian "$branch"
    local tmp
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    format_series "$tmp"
    mkdir -p "$patches"
    rm -f "$patches"/*.patch
    mv "$tmp"/*.patch "$tmp/series" "$patches/"
    echo "$(series_hash) $(git -C "$tree" rev-parse HEAD)" >"$tree/.git/$stamp_name"
    say "exported $(wc -l <"$patches/series") patches and the cover letter to $patches"
}

# libvirt/patches must be exactly what format-patch writes for the tree
# made from them: nothing edited by hand, the cover letter included.
verify_series() {
    tree
    local tmp
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    format_series "$tmp"
    diff -ru "$patches" "$tmp" >&2 ||
        die "libvirt/patches differs from what 'git format-patch' writes for it (above)"
    say "libvirt/patches is what format-patch writes"
}

# --- debs -------------------------------------------------------------------

debs() {
    fetch_source
    deps
    local t0
    t0=$(now)
    rm -rf "$debs"
    mkdir -p "$debs"
    local dir="$debs/libvirt-$version"
    dpkg-source -x -q "$pkgdir/libvirt_$debian_version.dsc" "$dir" >/dev/null
    # The series goes after Debian's own patches, under hostdev/.
    mkdir -p "$dir/debian/patches/hostdev"
    local f
    while read -r f; do
        cp "$f" "$dir/debian/patches/hostdev/"
        echo "hostdev/$(basename "$f")" >>"$dir/debian/patches/series"
    done < <(series_files)
    local name email date
    name=$(git -C "$root" config user.name || echo "hostdev build")
    email=$(git -C "$root" config user.email || echo "hostdev@localhost")
    date=$(date -R)
    {
        echo "libvirt ($debian_version$suffix) bookworm; urgency=medium"
        echo
        echo "  * hostdev's group-aware give-back of PCI devices (libvirt/patches)."
        echo
        echo " -- $name <$email>  $date"
        echo
        cat "$dir/debian/changelog"
    } >"$dir/debian/changelog.new"
    mv "$dir/debian/changelog.new" "$dir/debian/changelog"
    say "building Debian packages in $dir (nocheck nodoc, $jobs jobs, nice)"
    (cd "$dir" && DEB_BUILD_OPTIONS="nocheck nodoc parallel=$jobs" \
        "${nice[@]}" dpkg-buildpackage -us -uc -b >"$debs/build.log" 2>&1) || {
        tail -n 40 "$debs/build.log" >&2
        die "dpkg-buildpackage failed (whole log: $debs/build.log)"
    }
    say "packages built in $(elapsed "$t0") s:"
    ls "$debs"/*.deb
}

# The packages a QEMU/KVM host installs (what `apt install libvirt-daemon-system`
# pulls in of libvirt's own packages)
readonly host_packages=(libvirt0 libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu
    libvirt-daemon-system libvirt-daemon-system-systemd libvirt-daemon-config-network
    libvirt-daemon-config-nwfilter libvirt-l10n)

# Install the packages `debs` built into a fresh Debian 12 chroot (not on
# this machine, whose own libvirt stays Debian's) with apt, as a user would,
# and check what got installed runs.
debs_chroot() {
    local root="$debs/chroot"
    local t0 pkg deb
    local files=()
    for pkg in "${host_packages[@]}"; do
        deb=$(ls "$debs/${pkg}_$debian_version${suffix}_"*.deb 2>/dev/null | sed -n 1p || true)
        [ -n "$deb" ] || die "no $pkg package in $debs: run libvirt/libvirt.sh debs first"
        files+=("/debs/$(basename "$deb")")
    done
    command -v mmdebstrap >/dev/null || apt_get install -y -qq --no-install-recommends mmdebstrap >/dev/null
    t0=$(now)
    rm -rf "$root"
    say "making a Debian 12 chroot in $root (mmdebstrap)"
    "${sudo[@]}" mmdebstrap --quiet --variant=apt bookworm "$root" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" >"$debs/chroot.log" 2>&1 ||
        { tail -n 20 "$debs/chroot.log" >&2; die "mmdebstrap failed"; }
    say "chroot made in $(elapsed "$t0") s"
    # No service starts in a chroot
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$root/usr/sbin/policy-rc.d" >/dev/null
    "${sudo[@]}" chmod +x "$root/usr/sbin/policy-rc.d"
    "${sudo[@]}" mkdir -p "$root/debs"
    "${sudo[@]}" cp "$debs"/*.deb "$root/debs/"
    t0=$(now)
    say "apt install of ${host_packages[*]} from the packages built"
    # mmdebstrap leaves no package lists behind
    "${sudo[@]}" chroot "$root" apt-get update -qq >>"$debs/chroot.log" 2>&1 ||
        { tail -n 20 "$debs/chroot.log" >&2; die "apt-get update in the chroot failed"; }
    "${sudo[@]}" chroot "$root" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${files[@]}" >>"$debs/chroot.log" 2>&1 ||
        { tail -n 30 "$debs/chroot.log" >&2; die "apt-get install in the chroot failed"; }
    say "installed in $(elapsed "$t0") s:"
    "${sudo[@]}" chroot "$root" dpkg-query -W -f='  ${Package} ${Version}\n' "${host_packages[@]}"
    "${sudo[@]}" chroot "$root" virsh --version
    "${sudo[@]}" chroot "$root" /usr/sbin/libvirtd --version
    # Debian 12 ships the monolithic libvirtd only (no virtqemud)
    "${sudo[@]}" chroot "$root" ls /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so
}

# --- main -------------------------------------------------------------------

case "${1:-all}" in
deps) deps ;;
source) fetch_source ;;
tree) deps; tree ;;
build) deps; build ;;
test) run_tests ;;
syntax-check) run_syntax_check ;;
all) deps; build; verify_series; run_tests; run_syntax_check ;;
export) export_series ;;
verify) verify_series ;;
debs) debs ;;
debs-chroot) debs_chroot ;;
*) die "unknown step '$1' (deps, source, tree, build, test, syntax-check, all, verify, export, debs, debs-chroot)" ;;
esac
