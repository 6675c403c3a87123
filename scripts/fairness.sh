#!/usr/bin/env bash
# scripts/fairness.sh: a benchmark (not a test) of weighted fair sharing among client classes.
#
# Two slow backends (our `backend --delay-ms 200`) behind the balancer with -N 6 and weights
# 127.0.0.2=2, 127.0.0.3=1 and (with 3 groups) 127.0.0.4=3. Each group is a set of client
# loops bound to its own source address, all backlogged (more loops than slots). The groups
# join and leave on a schedule, so the run shows a lone class taking every slot, then the
# shares being recomputed as classes come and go:
#   127.0.0.2 (w 2): the whole run
#   127.0.0.3 (w 1): from 1/8 of the run to the end
#   127.0.0.4 (w 3): from 3/8 to 3/4 of the run (3 groups only)
# scripts/bench/fairness_clients.py samples the admin /status and the servers' /inflight every
# --interval on one clock. Output in OUT: fairness.csv, summary.txt, fairness.png (gnuplot),
# and the PNG is copied to docs/fairness.png unless --no-docs.
#
# Every process it starts leads its own process group and is stopped by its recorded pid on
# EXIT, INT and TERM; nothing is killed by name.
set -euo pipefail

readonly HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly ROOT=$(cd "$HERE/.." && pwd)

DURATION=24
INTERVAL=0.5
DELAY_MS=200
LIMIT=6
NGROUPS=3
CLIENTS=8
OUT=$ROOT/bench-out/fairness
DOCS=1
LB=$ROOT/target/release/loadbalancer
BACKEND=$ROOT/target/release/backend

usage() {
    echo "usage: scripts/fairness.sh [--duration S] [--interval S] [--delay-ms D] [-N n]" \
        "[--groups 2|3] [--clients K] [--out DIR] [--no-docs] [-h]"
}

help() {
    usage
    cat <<EOF

  --duration S    seconds of load (default $DURATION)
  --interval S    sampling period of /status and /inflight (default $INTERVAL)
  --delay-ms D    the servers' delay per request (default $DELAY_MS)
  -N n            the balancer's global bound (default $LIMIT)
  --groups 2|3    client groups: weights 2 and 1, or 2, 1 and 3 (default $NGROUPS)
  --clients K     client loops per group, more than its share of slots (default $CLIENTS)
  --out DIR       where fairness.csv, summary.txt, fairness.png go (default bench-out/fairness)
  --no-docs       do not copy the PNG to docs/fairness.png
EOF
}

log() { printf 'fairness: %s\n' "$*" >&2; }
die() {
    printf 'fairness: %s\n' "$*" >&2
    exit 1
}

parse_args() {
    while (($# > 0)); do
        case $1 in
            -h | --help) help; exit 0 ;;
            --duration) DURATION=${2:?--duration needs seconds}; shift ;;
            --interval) INTERVAL=${2:?--interval needs seconds}; shift ;;
            --delay-ms) DELAY_MS=${2:?--delay-ms needs a number}; shift ;;
            -N) LIMIT=${2:?-N needs a number}; shift ;;
            --groups) NGROUPS=${2:?--groups needs 2 or 3}; shift ;;
            --clients) CLIENTS=${2:?--clients needs a number}; shift ;;
            --out) OUT=${2:?--out needs a directory}; shift ;;
            --no-docs) DOCS=0 ;;
            *) usage >&2; die "unknown argument '$1'" ;;
        esac
        shift
    done
    [[ $NGROUPS == 2 || $NGROUPS == 3 ]] || { usage >&2; die "--groups must be 2 or 3"; }
    local n
    for n in "$DURATION" "$DELAY_MS" "$LIMIT" "$CLIENTS"; do
        [[ $n =~ ^[1-9][0-9]*$ ]] || { usage >&2; die "'$n' is not a positive whole number"; }
    done
}

need_tools() {
    command -v python3 >/dev/null || die "missing: python3 (apt-get install -y python3)"
    command -v gnuplot >/dev/null && return 0
    ((EUID == 0)) || die "missing: gnuplot; as root: apt-get install -y gnuplot-nox"
    log "installing gnuplot-nox"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnuplot-nox
}

need_binaries() {
    [[ -x $LB && -x $BACKEND ]] && return 0
    log "building the balancer and the backend (cargo build --release)"
    (cd "$ROOT" && cargo build --release --bin loadbalancer --bin backend) >&2
}

# ------------------------------------------------------------------ processes

WORK=""
# shellcheck source=scripts/bench/procs.sh
source "$HERE/bench/procs.sh"

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#GROUPS_STARTED[@]} - 1; i >= 0; i--)); do
        stop_group "${GROUPS_STARTED[i]}"
    done
    wait 2>/dev/null || true
    [[ -z $WORK || ! -d $WORK ]] || rm -rf -- "$WORK"
    exit "$rc"
}

# log_port LOG PID REGEX: the port in the first line of LOG matching REGEX (ending in :PORT
# or :PORT/), waiting up to 10 s while PID lives.
log_port() {
    local logf=$1 pid=$2 re=$3 deadline=$((SECONDS + 10)) line
    until line=$(grep -o -m1 -E "$re" "$logf" 2>/dev/null); do
        kill -0 "$pid" 2>/dev/null || die "process $pid died at start: $(tail -3 "$logf")"
        ((SECONDS < deadline)) || die "no line matching '$re' in $logf within 10 s"
        sleep 0.1
    done
    line=${line%/}
    echo "${line##*:}"
}

# ------------------------------------------------------------------ the run

SERVER_PORTS=()
start_backends() {
    local i
    for i in 1 2; do
        start_group "$OUT/s$i.log" "$BACKEND" --dir "$WORK" --delay-ms "$DELAY_MS" --threads 32 \
            --name "s$i" 0
        SERVER_PORTS+=("$(log_port "$OUT/s$i.log" "$STARTED" 'listening on 127\.0\.0\.1:[0-9]+')")
    done
}

# The weights of the groups, and when each runs (seconds from the start of the load).
group_specs() {
    local d=$DURATION
    echo "127.0.0.2=2:$CLIENTS@0-$d"
    echo "127.0.0.3=1:$CLIENTS@$((d / 8))-$d"
    ((NGROUPS == 2)) || echo "127.0.0.4=3:$CLIENTS@$((3 * d / 8))-$((3 * d / 4))"
}

start_balancer() {
    local weights=() spec
    while read -r spec; do weights+=(--weight "${spec%%:*}"); done < <(group_specs)
    start_group "$OUT/lb.log" "$LB" -N "$LIMIT" "${weights[@]}" --admin 0 0 "${SERVER_PORTS[@]}"
    LB_PID=$STARTED
    LB_PORT=$(log_port "$OUT/lb.log" "$LB_PID" 'listening on 127\.0\.0\.1:[0-9]+')
    ADMIN_PORT=$(log_port "$OUT/lb.log" "$LB_PID" 'admin on http://127\.0\.0\.1:[0-9]+/')
    log "balancer on $LB_PORT (admin $ADMIN_PORT), servers ${SERVER_PORTS[*]}: -N $LIMIT ${weights[*]}"
}

run_clients() {
    local groups=() spec
    while read -r spec; do groups+=(--group "$spec"); done < <(group_specs)
    # Bounded: the load lasts DURATION; a request waits at most the balancer's queue timeout.
    timeout -k 5 $((DURATION + 60)) python3 "$HERE/bench/fairness_clients.py" \
        --lb "$LB_PORT" --admin "$ADMIN_PORT" \
        --servers "$(IFS=,; echo "${SERVER_PORTS[*]}")" "${groups[@]}" \
        --duration "$DURATION" --interval "$INTERVAL" --service-ms "$DELAY_MS" \
        --csv "$OUT/fairness.csv" | tee "$OUT/summary.txt"
    kill -0 "$LB_PID" 2>/dev/null || die "the balancer died during the run: $(tail -3 "$OUT/lb.log")"
}

# ------------------------------------------------------------------ the plot

# slots: per class in_flight from /status when it reports classes, else estimated from the
# completions (Little's law: rate x delay).
plot() {
    local n=$NGROUPS slot_col=slots_est slot_title="slots held, estimated (completions/s x ${DELAY_MS} ms)"
    if awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "g1_in_flight") c = i; next }
                c && $c != "" { found = 1 } END { exit !found }' "$OUT/fairness.csv"; then
        slot_col=in_flight
        slot_title="slots held (in\\_flight per class, admin /status)"
    fi
    local names=("127.0.0.2 (w 2)" "127.0.0.3 (w 1)" "127.0.0.4 (w 3)") i slots shares
    slots="" shares=""
    for ((i = 1; i <= n; i++)); do
        slots+="'$OUT/fairness.csv' using 't':'g${i}_$slot_col' with lines lt $i lw 2 title '${names[i - 1]}', "
        shares+="'$OUT/fairness.csv' using 't':'g${i}_share' with lines lt $i lw 2 title '${names[i - 1]}', "
    done
    gnuplot <<EOF
set terminal pngcairo size 1000,900 font ",10"
set output '$OUT/fairness.png'
set datafile separator ','
set key outside right width 2
set grid
set lmargin 10
set rmargin 24
set xrange [0:$DURATION]
set multiplot layout 3,1 title "Weighted fair sharing: -N $LIMIT, 2 servers with --delay-ms $DELAY_MS, $CLIENTS client loops per class ($(date +%F))"
set title "$slot_title"
set ylabel 'slots'
set yrange [0:$((LIMIT + 1))]
plot $LIMIT with lines dt 2 lc 'gray40' title 'N', ${slots%, }
set title 'share of completions (1 s window)'
set ylabel 'share'
set yrange [0:1.05]
plot ${shares%, }
set title "servers: requests in progress (sum of GET /inflight current), balancer queue"
set ylabel 'connections'
set xlabel 'seconds'
set yrange [0:*]
set offsets 0, 0, 2, 0
plot $LIMIT with lines dt 2 lc 'gray40' title 'N', \
     '$OUT/fairness.csv' using 't':'lb_queued' with steps lt 4 lw 1 title 'queued in balancer', \
     '$OUT/fairness.csv' using 't':'servers_current' with steps lt 1 lw 2 title 'servers in flight'
unset multiplot
EOF
    log "wrote $OUT/fairness.png"
    if ((DOCS)); then
        mkdir -p "$ROOT/docs"
        cp "$OUT/fairness.png" "$ROOT/docs/fairness.png"
        log "copied to docs/fairness.png"
    fi
}

main() {
    parse_args "$@"
    need_tools
    need_binaries
    mkdir -p "$OUT"
    WORK=$(mktemp -d /tmp/lb-fairness.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    printf 'fairness\n' >"$WORK/f"
    echo "date: $(date); machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    start_backends
    start_balancer
    run_clients
    plot
    echo "CSV: $OUT/fairness.csv  plot: $OUT/fairness.png"
}

main "$@"
