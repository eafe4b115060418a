#!/usr/bin/env bash
# The bash completion of hostdevctl: it offers exactly the verbs
# `hostdevctl --help` lists, and completes options and arguments.
#   test-completion.sh HOSTDEVCTL COMPLETION-FILE
set -euo pipefail

hostdevctl=$1
completion=$2
fail() { echo "FAIL: $*" >&2; exit 1; }

# What the bash-completion package provides, reduced to what is used.  It
# sets the caller's locals (bash's dynamic scope), which shellcheck cannot see.
# shellcheck disable=SC2034
_init_completion() {
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
    cur=${words[cword]}
    prev=${words[cword - 1]}
}
_filedir() { COMPREPLY=(FILES); }
# shellcheck source=/dev/null
. "$completion"

# complete WORD... : the completions of the last word
complete_words() {
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    COMPREPLY=()
    # As in an interactive shell: completion functions are not written for -u.
    set +u
    _hostdevctl
    set -u
    printf '%s\n' "${COMPREPLY[@]}" | sort
}

offered=$(complete_words hostdevctl "" | grep -v '^-')
listed=$("$hostdevctl" --help | awk '/^Verbs:/ { on = 1; next } on && /^  [a-z]/ { print $1 }' |
         sort)
[ -n "$listed" ] || fail "no verbs in hostdevctl --help"
[ "$offered" = "$listed" ] || fail "completion offers
$offered
but hostdevctl --help lists
$listed"

[ "$(complete_words hostdevctl nodedev-re)" = "$(printf 'nodedev-reattach\nnodedev-reset')" ] ||
    fail "prefix completion of nodedev-re"
complete_words hostdevctl --js | grep -x -- --json >/dev/null || fail "--json not offered"
[ "$(complete_words hostdevctl --socket "")" = FILES ] || fail "--socket does not complete files"
echo "ok: $(echo "$listed" | wc -l) verbs, prefixes, options"
