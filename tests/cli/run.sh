#!/usr/bin/env bash
# Golden end-to-end tests of the kvio command-line tool.
#
#   bash tests/cli/run.sh PATH/TO/kvio [CASE-NAME-PATTERN...]
#
# Each tests/cli/cases/NAME.case is one case: a shell command (usually
# several kvio calls) with its stdin, and the exact stdout, stderr and exit
# status expected. The format, by example:
#
#   # One line saying what the case checks.
#   --- setup          (optional; run first, must exit 0, output ignored)
#   kvio put alice hello
#   --- cmd            (required; bash, run with `set -o pipefail`)
#   kvio get alice
#   --- stdin          (optional; default: empty)
#   --- stdout -n      (optional; default: empty. "-n": no final newline)
#   hello
#   --- stderr         (optional; default: empty)
#   --- status         (optional; default: 0)
#   0
#
# Every case runs in a fresh temporary directory $WORK (also the current
# directory), with KVIO_STORE=disk://$WORK/db, and `kvio` a function calling
# the binary under test. Occurrences of $WORK in the output read "@WORK@".
# Prints PASS/FAIL per case (with a diff on failure) and "N passed, M failed";
# exits 1 if any case failed, 77 if the binary is missing.
set -u

KVIO=${1:-}
shift || true
if [ -z "$KVIO" ] || [ ! -x "$KVIO" ]; then
  echo "usage: run.sh PATH/TO/kvio [PATTERN...] (binary '$KVIO' not found)" >&2
  exit 77
fi
KVIO=$(cd "$(dirname "$KVIO")" && pwd)/$(basename "$KVIO")
CASES=$(cd "$(dirname "$0")/cases" && pwd)
TMPROOT=$(mktemp -d "${TMPDIR:-/tmp}/kvio-cli.XXXXXX")
trap 'rm -rf "$TMPROOT"' EXIT
export KVIO

passed=0
failed=0

# Split a case file into $2/{setup,cmd,stdin,stdout,stderr,status}.
split_case() {
  local file=$1 dir=$2 section="" line flag
  : >"$dir/stdin"
  : >"$dir/stdout"
  : >"$dir/stderr"
  echo 0 >"$dir/status"
  : >"$dir/nonl"
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line =~ ^---\ ([a-z]+)(\ (-n))?$ ]]; then
      section=${BASH_REMATCH[1]}
      flag=${BASH_REMATCH[3]}
      : >"$dir/$section"
      [ "$flag" = "-n" ] && echo "$section" >>"$dir/nonl"
      continue
    fi
    [ -z "$section" ] && continue # the description
    printf '%s\n' "$line" >>"$dir/$section"
  done <"$file"
  # "-n" sections lose the newline that ends their last line.
  while read -r section; do
    [ -s "$dir/$section" ] && truncate -s -1 "$dir/$section"
  done <"$dir/nonl"
}

# Run a shell fragment in $work with the case environment.
run_fragment() {
  local work=$1 script=$2 in=$3 out=$4 err=$5
  (
    cd "$work" || exit 99
    export WORK=$work
    export KVIO_STORE="disk://$work/db"
    kvio() { "$KVIO" "$@"; }
    set -o pipefail
    eval "$(cat "$script")"
  ) <"$in" >"$out" 2>"$err"
}

normalize() {
  local work=$1 file=$2
  sed -i "s|$work|@WORK@|g" "$file"
}

run_case() {
  local file=$1 name dir work status
  name=$(basename "$file" .case)
  dir=$TMPROOT/$name
  work=$dir/work
  mkdir -p "$dir/expected" "$work"
  split_case "$file" "$dir/expected"
  if [ ! -f "$dir/expected/cmd" ]; then
    echo "FAIL $name: no '--- cmd' section"
    failed=$((failed + 1))
    return
  fi
  if [ -f "$dir/expected/setup" ]; then
    if ! run_fragment "$work" "$dir/expected/setup" /dev/null \
      "$dir/setup.out" "$dir/setup.err"; then
      echo "FAIL $name: setup failed"
      sed 's/^/    /' "$dir/setup.err"
      failed=$((failed + 1))
      return
    fi
  fi
  run_fragment "$work" "$dir/expected/cmd" "$dir/expected/stdin" \
    "$dir/stdout" "$dir/stderr"
  echo $? >"$dir/status"
  normalize "$work" "$dir/stdout"
  normalize "$work" "$dir/stderr"
  local ok=1 what
  for what in stdout stderr status; do
    if ! cmp -s "$dir/expected/$what" "$dir/$what"; then
      if [ $ok = 1 ]; then echo "FAIL $name"; fi
      ok=0
      echo "  $what differs (--- expected, +++ actual):"
      diff -u --label expected --label actual "$dir/expected/$what" \
        "$dir/$what" | sed 's/^/    /'
    fi
  done
  if [ $ok = 1 ]; then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
}

selected() {
  local name=$1 pat
  [ ${#PATTERNS[@]} -eq 0 ] && return 0
  for pat in "${PATTERNS[@]}"; do
    [[ $name == *$pat* ]] && return 0
  done
  return 1
}

PATTERNS=("$@")
for file in "$CASES"/*.case; do
  selected "$(basename "$file" .case)" || continue
  run_case "$file"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
