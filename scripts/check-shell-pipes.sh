#!/bin/sh
# No shell script of the tree ends a pipeline with a reader that may stop
# before its writer is done: `cmd | grep -q` or `cmd | head`.  Under
# `set -o pipefail` the writer then dies of SIGPIPE now and then, and the
# pipeline fails at random (libvirt.sh's deb-src check failed CI so).
# Use `grep ... >/dev/null`, `sed -n 1p`, or a variable instead.
#   check-shell-pipes.sh SRCDIR
set -eu
cd "$1"
status=0
# The tree's own scripts: what git tracks, else (a tarball) what is there.
if ! files=$(git ls-files -- '*.sh' '*/run' 2>/dev/null) || [ -z "$files" ]; then
    files=$(find . -path './build*' -prune -o -path './.git' -prune -o \
        -type f \( -name '*.sh' -o -name run \) -print | sed 's|^\./||' | sort)
fi
files=$(printf '%s\n' "$files" | grep -vx 'scripts/check-shell-pipes.sh')
for f in $files; do
    # grep with a q among its short options, or head, right after a pipe.
    hits=$(grep -nE '\|[[:space:]]*(grep[[:space:]]+(-[a-zA-Z]*q[a-zA-Z]*|--quiet)|head)([[:space:]]|$)' "$f" |
        grep -vE '^[0-9]+:[[:space:]]*#' || true)
    [ -z "$hits" ] && continue
    printf '%s\n' "$hits" | sed "s|^|$f:|"
    status=1
done
[ $status -eq 0 ] && echo "ok: $(echo "$files" | wc -l) shell scripts"
exit $status
