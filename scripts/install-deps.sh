#!/usr/bin/env bash
# Install the Debian packages hostdev needs that this machine lacks.
# Idempotent and quiet: does nothing when everything is present.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
lists=("$here/debian-packages.txt")
for extra in "$@"; do
    lists+=("$here/debian-packages-$extra.txt")
done

wanted=$(grep -hv '^\s*\(#\|$\)' "${lists[@]}" | sort -u)
missing=()
for pkg in $wanted; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
