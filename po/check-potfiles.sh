#!/bin/sh
# Every source file with a translatable string (_("...") or N_("...")) is
# listed in po/POTFILES.in, and every file listed there exists: otherwise
# its messages never reach the translators.
#   check-potfiles.sh SRCDIR
set -eu
src=$1
status=0
cd "$src"
for f in $(grep -rlE '\bN?_\("' --include='*.c' src | sort); do
    grep -qxF "$f" po/POTFILES.in || { echo "$f has translatable strings but is not in po/POTFILES.in"; status=1; }
done
while read -r f; do
    case $f in ''|'#'*) continue ;; esac
    [ -f "$f" ] || { echo "po/POTFILES.in lists $f, which does not exist"; status=1; }
done <po/POTFILES.in
exit $status
