#!/usr/bin/env bash
# scripts/soak.sh: the long storm (issue 13), not a test. It runs the storm test of
# tests/storm/ (its ignored `soak` test) for --minutes, with --idle idle connections on the
# balancer, in tcp mode, http mode or both, one after the other: four chaos servers (crashed,
# stalled, garbage probes, resets mid-body, a fault every half second), -N 8, 32 client
# threads. Every 10 s it prints the outcome counts so far, the throughput, the most requests
# the servers saw at once, and the balancer's descriptors, RSS and CPU; at the end the same
# checks as the short test (no failure, the bound, idle CPU, descriptors and RSS back).
#
# The run leads a process group of its own (job control); on EXIT, INT and TERM that group
# (cargo, the test binary, the balancer it started) is stopped by its recorded id, so nothing
# outlives the script and nothing is killed by name.
set -euo pipefail

readonly ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

MINUTES=10
SECONDS_EACH=
IDLE=5000
MODES=tcp,http
FAULTS=
REPORT=10

usage() {
    echo "usage: scripts/soak.sh [--minutes N | --seconds N] [--idle N] [--mode tcp|http|both] [--faults LIST] [--report S] [-h]"
}

help() {
    usage
    cat <<'TXT'
  --minutes N   how long each mode's storm runs (default 10)
  --seconds N   the same in seconds, for a quick try (wins over --minutes)
  --idle N      idle connections held open on the balancer (default 5000; half of them
                parked keep-alive connections in http mode)
  --mode M      tcp, http or both (default both: tcp first, then http)
  --faults L    only these faults, comma-separated: crash,stall,garbage,reset or none
                (default: all four)
  --report S    seconds between progress lines (default 10)
TXT
}

number() {
    [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: $1 '$2': expected a positive whole number" >&2; exit 2; }
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --minutes) number "$1" "${2-}"; MINUTES=$2; shift 2 ;;
        --seconds) number "$1" "${2-}"; SECONDS_EACH=$2; shift 2 ;;
        --idle) number "$1" "${2-}"; IDLE=$2; shift 2 ;;
        --report) number "$1" "${2-}"; REPORT=$2; shift 2 ;;
        --faults) FAULTS=${2-}; shift 2 ;;
        --mode)
            case ${2-} in
                tcp | http) MODES=$2 ;;
                both) MODES=tcp,http ;;
                *) echo "soak.sh: --mode '${2-}': expected tcp, http or both" >&2; exit 2 ;;
            esac
            shift 2 ;;
        -h | --help) help; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

# The test process holds the idle connections' client ends and the servers' ends of the
# balancer's connections; the balancer holds as many again. Both inherit this limit.
need=$((2 * IDLE + 1024))
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $need ]]; then
    ulimit -n "$need" 2>/dev/null || {
        echo "soak.sh: --idle $IDLE needs an open-file limit of $need (ulimit -n is $(ulimit -n), hard $(ulimit -Hn))" >&2
        exit 1
    }
fi

SECONDS_EACH=${SECONDS_EACH:-$((MINUTES * 60))}
cd "$ROOT"
cargo build --release --features fault-injection --tests

pgid=
stop() {
    if [[ -n $pgid ]]; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        wait "$pgid" 2>/dev/null || true
        pgid=
    fi
}
trap stop EXIT
trap 'stop; exit 130' INT TERM

echo "soak: ${SECONDS_EACH}s per mode ($MODES), $IDLE idle connections, faults: ${FAULTS:-all}"
set -m # the run below leads its own process group: $! is its id
env STORM_SECONDS="$SECONDS_EACH" STORM_IDLE="$IDLE" STORM_MODES="$MODES" STORM_REPORT_SECONDS="$REPORT" \
    ${FAULTS:+STORM_FAULTS="$FAULTS"} \
    cargo test --release --features fault-injection --test storm -- --ignored --exact storm::soak \
    --nocapture --test-threads 1 &
pgid=$!
set +m
status=0
wait "$pgid" || status=$?
pgid=
exit "$status"
