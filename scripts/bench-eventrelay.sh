#!/usr/bin/env bash
# Benchmark of eventrelay driven by eventsim (a benchmark, not a test; see issue 5).
#
# For each size (default: 1,000,000 then 10,000,000 events, 100 clients), runs RUNS (default 3)
# times: a fresh relay on kernel-chosen ports, eventsim against it, then reads the relay's CPU
# time (utime+stime from /proc/PID/stat) and peak RSS (VmHWM from /proc/PID/status) before
# stopping it with SIGTERM. Prints each run and the median of each figure.
#
#   scripts/bench-eventrelay.sh                 # 1M and 10M, 3 runs each
#   SIZES=1000000 RUNS=5 scripts/bench-eventrelay.sh
#
# Environment: SIZES, RUNS, CLIENTS (concurrencyLevel), BATCH (maxEventSourceBatchSize),
# BENCH_OUT (where the logs go, default bench-out/).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1000000 10000000"}
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-100}
BATCH=${BATCH:-100}
OUT=${BENCH_OUT:-bench-out}
mkdir -p "$OUT"

cargo build --release --quiet --bin eventrelay --bin eventsim
RELAY=target/release/eventrelay
SIM=target/release/eventsim
TICKS=$(getconf CLK_TCK)

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -sr), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "# clients=$CLIENTS max batch=$BATCH runs=$RUNS"

relay_pid=""
cleanup() { [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true; }
trap cleanup EXIT

# run_once EVENTS N -> prints "events/s notifications/s cpu_seconds peak_rss_kb seconds"
run_once() {
    local events=$1 n=$2 log="$OUT/relay-$1-$2.log" simout="$OUT/sim-$1-$2.out"
    "$RELAY" --event-port 0 --client-port 0 2>"$log" &
    relay_pid=$!
    local ep="" cp="" i
    for i in $(seq 1 200); do # up to 10 s for the relay to log its ports
        ep=$(grep -o 'events listening on [0-9.]*:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        cp=$(grep -o 'clients listening on [0-9.]*:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        [ -n "$ep" ] && [ -n "$cp" ] && break
        sleep 0.05
    done
    if [ -z "$ep" ] || [ -z "$cp" ]; then echo "relay did not start; see $log" >&2; exit 1; fi
    if ! "$SIM" --event-port "$ep" --client-port "$cp" --total-events "$events" --concurrency "$CLIENTS" \
        --max-batch "$BATCH" --log-interval 600000 -q >"$simout"; then
        echo "eventsim failed; see $simout and $log" >&2
        cat "$simout" >&2
        exit 1
    fi
    local stat cpu rss
    stat=$(sed 's/.*) //' "/proc/$relay_pid/stat")
    cpu=$(echo "$stat" | awk -v t="$TICKS" '{printf "%.2f", ($12 + $13) / t}')
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$relay_pid/status")
    kill -TERM "$relay_pid"
    wait "$relay_pid" || true
    relay_pid=""
    local eps nps secs
    eps=$(awk '/^events\/s:/ {print $2}' "$simout")
    nps=$(awk '/^notifications\/s:/ {print $2}' "$simout")
    secs=$(awk '/^seconds:/ {print $2}' "$simout")
    echo "$eps $nps $cpu $rss $secs"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for events in $SIZES; do
    results=()
    for n in $(seq 1 "$RUNS"); do
        r=$(run_once "$events" "$n")
        results+=("$r")
        set -- $r
        printf '%9d events run %d: %8.3f s  %9.0f events/s  %9.0f notifications/s  relay cpu %5.2f s  peak rss %6d KB\n' \
            "$events" "$n" "$5" "$1" "$2" "$3" "$4"
    done
    col() { printf '%s\n' "${results[@]}" | awk -v c="$1" '{print $c}' | median; }
    printf '%9d events MEDIAN: %8.3f s  %9.0f events/s  %9.0f notifications/s  relay cpu %5.2f s  peak rss %6d KB\n' \
        "$events" "$(col 5)" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)"
done
