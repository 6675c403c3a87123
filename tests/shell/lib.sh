# Shared helpers for the curl-driven shell tests. Source it; call `cleanup` on exit.
# Every program binds port 0 and logs the port it got; waits follow the log (tail -f), each
# bounded by `timeout`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
WORK=$(mktemp -d)
PIDS=()
FAILS=0

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}

# wait_log FILE TEXT [SECONDS]: the first line of FILE containing TEXT, waiting for it.
wait_log() {
  local file=$1 text=$2 secs=${3:-10} line fd tpid
  exec {fd}< <(exec timeout "$secs" tail -n +1 -f "$file")
  tpid=$!
  while IFS= read -r -u "$fd" line; do
    if [[ $line == *"$text"* ]]; then
      kill "$tpid" 2>/dev/null || true
      exec {fd}<&-
      echo "$line"
      return 0
    fi
  done
  exec {fd}<&-
  echo "no '$text' in $file within ${secs}s:" >&2
  cat "$file" >&2
  return 1
}

# start NAME CMD...: runs CMD in the background, stderr to $WORK/NAME.log, and waits for its
# "listening on" line; then PID_NAME holds its pid and PORT_NAME the port it logged.
# Call it directly, never inside $(...): a subshell's PIDS+=() would not reach `cleanup`, and
# the process would outlive the test.
start() {
  local name=$1 line; shift
  # Create the log before the child does: the redirection below happens in the background
  # child, and a `tail -f` that finds no file yet gives up at once.
  : >"$WORK/$name.log"
  "$@" 2>>"$WORK/$name.log" >/dev/null &
  PIDS+=($!)
  printf -v "PID_$name" '%s' "$!"
  line=$(wait_log "$WORK/$name.log" "listening on ") || return 1
  printf -v "PORT_$name" '%s' "$(sed -E 's/.*listening on [^ ]*:([0-9]+).*/\1/' <<<"$line")"
}

pass() { echo "ok   $1"; }
fail() { echo "FAIL $1" >&2; FAILS=$((FAILS + 1)); }
check() { # check NAME EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: expected [$2], got [$3]"; fi
}
finish() {
  if [ "$FAILS" -gt 0 ]; then echo "$FAILS check(s) failed" >&2; exit 1; fi
  echo "all checks passed"
}
