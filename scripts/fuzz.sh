#!/usr/bin/env bash
# scripts/fuzz.sh: runs every cargo-fuzz target in fuzz/ (libFuzzer) for a fixed number of
# executions, or for a time budget, and fails if any of them finds a crash.
#
#   scripts/fuzz.sh                      each target for 20000 executions (the default)
#   scripts/fuzz.sh --runs 200000        each target for that many executions
#   scripts/fuzz.sh --time 600           each target for 600 s (the long form)
#   scripts/fuzz.sh http_body config_file  only these targets
#   scripts/fuzz.sh --asan ...           build with AddressSanitizer (slower; see DESIGN.md)
#   scripts/fuzz.sh --no-build ...       run what was built last
#
# The default build has no sanitizer (--sanitizer none): the parsers are safe Rust, so what a
# fuzzer can find in them is a panic (debug assertions on: an overflow is one too), a hang or
# runaway memory, and the coverage flags cargo-fuzz passes for that are stable. --asan adds
# AddressSanitizer, which cargo-fuzz asks for with the nightly-only -Zsanitizer=address; on the
# stable toolchain RUSTC_BOOTSTRAP=1 lets it through. It is set here for every build, so the
# two builds share one set of flags and the stable toolchain is enough for both.
# Each target runs on a scratch copy of its committed corpus (fuzz/corpus/TARGET), so a run
# never changes the tree; a crash is written to fuzz/artifacts/TARGET/ and named in the
# output. It prints one line per target: executions, seconds, corpus size at the end.
# Exit status: 0 when no target crashed, 1 when one did, 2 for a bad command line.
set -euo pipefail

readonly ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly FUZZ=$ROOT/fuzz
readonly TARGETS=(probe_reply http_request http_response http_body admin_request admin_body config_file relay_event relay_client_id)

runs=20000
seconds=""
sanitizer=none
build=1
chosen=()
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --runs) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --runs needs a positive count" >&2; exit 2; }
            runs=$2; shift 2 ;;
    --time) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --time needs whole seconds" >&2; exit 2; }
            seconds=$2; shift 2 ;;
    --asan) sanitizer=address; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) usage ;;
    -*) echo "fuzz.sh: unknown option '$1'" >&2; usage ;;
    *) [[ " ${TARGETS[*]} " == *" $1 "* ]] || { echo "fuzz.sh: no target '$1' (targets: ${TARGETS[*]})" >&2; exit 2; }
       chosen+=("$1"); shift ;;
  esac
done
[ ${#chosen[@]} -gt 0 ] || chosen=("${TARGETS[@]}")

command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 1; }
cd "$FUZZ"
# Debug assertions on: arithmetic overflow panics, so an overflow is a finding, not a wrap.
if [ "$build" -eq 1 ]; then
  # All targets at once: they share one build of the crate, so building one costs the same.
  RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer "$sanitizer" --debug-assertions >"$FUZZ/target.build.log" 2>&1 ||
    { tail -n 30 "$FUZZ/target.build.log" >&2; echo "fuzz.sh: build failed" >&2; exit 1; }
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=$FUZZ/target/$triple/release

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

failed=0
total=0
for t in "${chosen[@]}"; do
  [ -x "$bin_dir/$t" ] || { echo "fuzz.sh: $bin_dir/$t is not built" >&2; exit 1; }
  mkdir -p "$scratch/$t" "$FUZZ/artifacts/$t"
  cp "$FUZZ/corpus/$t"/* "$scratch/$t/" 2>/dev/null || true
  budget=(-runs="$runs")
  [ -n "$seconds" ] && budget=(-max_total_time="$seconds")
  log=$scratch/$t.log
  status=0
  # -timeout: one input taking 10 s is a hang, and a finding; -rss_limit_mb bounds a leak.
  "$bin_dir/$t" "${budget[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$FUZZ/artifacts/$t/" "$scratch/$t" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  size=$(find "$scratch/$t" -type f | wc -l)
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "FAIL $t: exit $status after ${execs:-?} executions" >&2
    grep -m 1 -A 3 "panicked at\|ERROR: libFuzzer\|ERROR: AddressSanitizer" "$log" >&2 || tail -n 20 "$log" >&2
    grep -o "Test unit written to .*" "$log" >&2 || true
  else
    printf '%-16s %10s executions in %4s s, corpus %s inputs\n' "$t" "${execs:-?}" "${secs:-?}" "$size"
    total=$((total + ${execs:-0}))
  fi
done
echo "total: $total executions over ${#chosen[@]} targets"
exit "$failed"
