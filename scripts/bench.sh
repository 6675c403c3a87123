#!/usr/bin/env bash
# scripts/bench.sh: a benchmark (not a test) of our balancer against direct access, HAProxy and
# nginx, all on 127.0.0.1, in one run, in three sections (--sections):
#
# tcp     2 nginx backends; HAProxy (mode tcp, balance leastconn, frontend maxconn N) and ours
#         (-N N -R r, tcp mode):
#           new-c4, new-c16, new-c64  wrk -H 'Connection: close' on a 128 B file (a new
#                                     connection per request), 4/16/64 client connections;
#           ka-c64                    keep-alive wrk on the same file, 64 client connections;
#           bulk                      parallel curl downloads of a 100 MiB file, sizes checked.
# http    2 of our `backend` servers (keep-alive); ours --mode http twice (-R 5 and -R 1000000),
#         HAProxy mode http (server maxconn summing to N, http-reuse safe, check inter 5s; run
#         with nbthread 1 and 2, the better one is reported), nginx http (upstream keepalive,
#         unbounded: a reference, not a peer at equal bound), direct to one backend:
#           new-c4, new-c16, new-c64, ka-c64  as above;
#           idle-ka-c64               ka-c64 with --idle (10,000) more keep-alive connections
#                                     open and idle against the proxy (scripts/bench/idle_conns.py:
#                                     each sent one request, then holds its connection).
# shared  the same backends; one instance of ours (--mode http -N N) against two instances that
#         share N through Redis (--shared-limit, a redis-server of our own, --save ''), the load
#         split evenly over both (two wrk at once): ka-c64 and new-c16. Redis calls per second
#         from INFO stats (total_commands_processed).
#
# Each workload runs --reps times on each target; the order of the targets is reversed every
# other rep so that drift favours none. It prints medians, ratios (medians of the ratios within
# a rep) and the proxy's CPU time per request (utime+stime of its process group from /proc
# before/after each run, divided by the requests served). Keep-alive rows say how many of the
# client connections were being served (req/s x mean latency, Little's law) and the p99.
# Raw runs go to OUT/runs.csv, the tables to OUT/table.md.
#
# Every process it starts leads its own process group and is stopped by its recorded pid on
# EXIT, INT and TERM; nothing is killed by name. Every run is bounded by a timeout.
set -euo pipefail

readonly HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly ROOT=$(cd "$HERE/.." && pwd)
readonly WRK_LUA=$HERE/bench/wrk-summary.lua
readonly SMALL_BYTES=128
readonly BIG_BYTES=$((100 << 20))

REPS=3
DURATION=4
LIMIT=4
PROBE_EVERY=5
LB=$ROOT/target/release/loadbalancer
BACKEND=$ROOT/target/release/backend
LB_EXTRA=""
OUT=$ROOT/bench-out/bench
SECTIONS="tcp,http,shared"
HTTP_BACKEND=ours
CONNS="4 16 64"
KA_CONNS=64
IDLE=10000
IDLE_WINDOW=256
BACKEND_THREADS=256
BULK_CLIENTS=4
BULK_REPEAT=3
BULK_TIMEOUT=120
WRK_THREADS=2
WRK_TIMEOUT=2
PAUSE=0.3
ONLY=""
REPORT_ONLY=0

usage() {
    echo "usage: scripts/bench.sh [--sections LIST] [--reps R] [--duration S] [--quick] [-N n] [-R r]" \
        "[--idle K] [--lb PATH] [--backend PATH] [--http-backend ours|nginx] [--lb-args 'ARGS'] [--workloads LIST] [--out DIR]" \
        "[--report-only] [-h]"
}

help() {
    usage
    cat <<EOF

  --sections L    comma list among tcp,http,shared (default $SECTIONS)
  --reps R        runs of each workload on each target; the tables show medians (default $REPS)
  --duration S    seconds per wrk run (default $DURATION)
  --quick         --reps 1 --duration 2, one download per bulk client: a smoke run (~3 min)
  -N n            the global bound: our -N, HAProxy's maxconn (default $LIMIT)
  -R r            ours' -R in the tcp section (default $PROBE_EVERY); the http section runs
                  both -R 5 and -R 1000000, the shared one -R 1000000
  --idle K        idle keep-alive connections of the idle-ka-c64 row (default $IDLE; 0: no row)
  --lb PATH       the balancer binary (default target/release/loadbalancer, built if missing)
  --backend PATH  the backend binary (default target/release/backend, built if missing)
  --http-backend B  the servers of the http and shared sections: ours (default: our
                  \`backend\`) or nginx (the tcp section's, to tell a backend's cost from a proxy's)
  --lb-args ARGS  extra words for every instance of ours, e.g. '--balance least-conn'
  --workloads W   comma list among new-c4,new-c16,new-c64,ka-c64,idle-ka-c64,bulk (default all)
  --out DIR       where runs.csv, table.md and the logs go (default bench-out/bench)
  --report-only   measure nothing: print the tables again from OUT/runs.csv (give the same
                  --sections, --reps, --duration, -N, -R as the run had; they only label them)

Run as root to have wrk, haproxy, nginx and redis-server installed when missing. The full run
takes about 13 minutes on 2 cores; --quick about 3.
EOF
}

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: %s\n' "$*" >&2
    exit 1
}

parse_args() {
    while (($# > 0)); do
        case $1 in
            -h | --help) help; exit 0 ;;
            --sections) SECTIONS=${2:?--sections needs a list}; shift ;;
            --reps) REPS=${2:?--reps needs a number}; shift ;;
            --duration) DURATION=${2:?--duration needs seconds}; shift ;;
            --quick) REPS=1; DURATION=2; BULK_REPEAT=1 ;;
            -N) LIMIT=${2:?-N needs a number}; shift ;;
            -R) PROBE_EVERY=${2:?-R needs a number}; shift ;;
            --idle) IDLE=${2:?--idle needs a number}; shift ;;
            --lb) LB=${2:?--lb needs a path}; shift ;;
            --backend) BACKEND=${2:?--backend needs a path}; shift ;;
            --http-backend) HTTP_BACKEND=${2:?--http-backend needs ours or nginx}; shift ;;
            --lb-args) LB_EXTRA=${2?--lb-args needs words}; shift ;;
            --workloads) ONLY=${2:?--workloads needs a list}; shift ;;
            --out) OUT=${2:?--out needs a directory}; shift ;;
            --report-only) REPORT_ONLY=1 ;;
            *) usage >&2; die "unknown argument '$1'" ;;
        esac
        shift
    done
    local n
    for n in "$REPS" "$DURATION" "$LIMIT" "$PROBE_EVERY"; do
        [[ $n =~ ^[1-9][0-9]*$ ]] || { usage >&2; die "'$n' is not a positive whole number"; }
    done
    [[ $HTTP_BACKEND == ours || $HTTP_BACKEND == nginx ]] ||
        { usage >&2; die "--http-backend '$HTTP_BACKEND' is neither ours nor nginx"; }
    [[ $IDLE =~ ^[0-9]+$ ]] || { usage >&2; die "--idle '$IDLE' is not a whole number"; }
    for n in ${SECTIONS//,/ }; do
        [[ $n == tcp || $n == http || $n == shared ]] ||
            { usage >&2; die "--sections: '$n' is none of tcp, http, shared"; }
    done
    if section http && ((LIMIT < 2)); then
        die "-N $LIMIT: the http section needs at least 2 (HAProxy's server maxconn sums to N over 2 servers)"
    fi
}

# section NAME: true if NAME is among --sections.
section() { [[ ,$SECTIONS, == *,$1,* ]]; }

# wanted WORKLOAD: true if --workloads is empty or names it.
wanted() { [[ -z $ONLY || ,$ONLY, == *,$1,* ]]; }

# ------------------------------------------------------------------ tools

need_tools() {
    local missing=() pkgs=()
    command -v wrk >/dev/null || { missing+=(wrk); pkgs+=(wrk); }
    command -v haproxy >/dev/null || { missing+=(haproxy); pkgs+=(haproxy); }
    command -v nginx >/dev/null || { missing+=(nginx); pkgs+=(nginx); }
    command -v curl >/dev/null || { missing+=(curl); pkgs+=(curl); }
    command -v python3 >/dev/null || { missing+=(python3); pkgs+=(python3); }
    if section shared; then
        command -v redis-server >/dev/null || { missing+=(redis-server); pkgs+=(redis-server); }
        command -v redis-cli >/dev/null || { missing+=(redis-cli); pkgs+=(redis-tools); }
    fi
    ((${#missing[@]} == 0)) && return 0
    if ((EUID != 0)); then
        die "missing: ${missing[*]}; as root: apt-get install -y ${pkgs[*]}"
    fi
    log "installing ${pkgs[*]}"
    apt-get update -q
    # policy-rc.d keeps the packages from starting their system-wide services: we run our own.
    local made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
    [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
}

need_binaries() {
    [[ -x $LB && -x $BACKEND ]] && return 0
    [[ -x $LB || $LB == "$ROOT/target/release/loadbalancer" ]] || die "$LB: not an executable"
    [[ -x $BACKEND || $BACKEND == "$ROOT/target/release/backend" ]] || die "$BACKEND: not an executable"
    log "building the balancer and the backend (cargo build --release)"
    (cd "$ROOT" && cargo build --release --bin loadbalancer --bin backend) >&2
}

# The idle row needs IDLE descriptors in the helper and in the proxy, beyond the busy ones:
# the soft open-file limit goes up to the hard one (which only a privileged process could
# raise), and the row shrinks, with a warning, if even that is too low.
raise_fd_limit() {
    local hard
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=1048576
    ulimit -n "$hard"
    FD_LIMIT=$hard
    if ((IDLE > 0 && IDLE + 1024 > hard)); then
        log "open-file limit $hard: the idle row holds $((hard - 1024)) connections, not $IDLE"
        IDLE=$((hard - 1024))
        ((IDLE > 0)) || IDLE=0
    fi
}

# ------------------------------------------------------------------ processes

WORK=""
WAIT_PIDS=()      # the clients (wrk) we are waiting on, if any
# shellcheck source=scripts/bench/procs.sh
source "$HERE/bench/procs.sh"

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for i in "${WAIT_PIDS[@]}"; do stop_group "$i"; done
    for ((i = ${#GROUPS_STARTED[@]} - 1; i >= 0; i--)); do
        stop_group "${GROUPS_STARTED[i]}"
    done
    wait 2>/dev/null || true
    [[ -z $WORK || ! -d $WORK ]] || rm -rf -- "$WORK"
    exit "$rc"
}

# stop_from INDEX: stops the groups started since GROUPS_STARTED had INDEX entries, newest
# first, and forgets them (so that a later pid reuse is never mistaken for one of ours).
stop_from() {
    local from=$1 i
    for ((i = ${#GROUPS_STARTED[@]} - 1; i >= from; i--)); do
        stop_group "${GROUPS_STARTED[i]}"
        wait "${GROUPS_STARTED[i]}" 2>/dev/null || true
    done
    GROUPS_STARTED=("${GROUPS_STARTED[@]:0:from}")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID: until PORT accepts a connection, or fail if PID dies or 10 s pass.
wait_port() {
    local port=$1 pid=$2 deadline=$((SECONDS + 10))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "process $pid died before listening on $port"
        ((SECONDS < deadline)) || die "nothing listens on $port after 10 s"
        sleep 0.1
    done
}

# wait_line FILE REGEX PID SECS: until a line of FILE matches REGEX (prints it), or fail if
# PID dies or SECS pass.
wait_line() {
    local file=$1 re=$2 pid=$3 deadline=$((SECONDS + $4)) line
    until line=$(grep -E -m1 "$re" "$file" 2>/dev/null); do
        kill -0 "$pid" 2>/dev/null || die "process $pid died: $(tail -3 "$file" 2>/dev/null)"
        ((SECONDS < deadline)) || die "no line '$re' in $file after $4 s"
        sleep 0.1
    done
    printf '%s\n' "$line"
}

# group_ticks PGID...: CPU time (user + system, all threads) in clock ticks of every process
# in these process groups, from /proc/PID/stat (fields 14 and 15 of proc(5)).
group_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v groups=" $* " '
        { sub(/^[^(]*\(.*\) /, "") } # the fields after "(comm)", which may itself hold spaces
        index(groups, " " $3 " ") { t += $12 + $13 }
        END { print t + 0 }'
}

now_ns() { date +%s%N; }

# thread_ticks PID: "NAME=TICKS ..." per thread name (comm) of PID, summed over its threads, so
# a run can say which kind of thread (accept, worker, health) took the CPU.
thread_ticks() {
    { cat /proc/"$1"/task/*/stat 2>/dev/null || true; } | awk '
        { name = $0; sub(/^[0-9]+ \(/, "", name); sub(/\) .*$/, "", name)
          rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
          t[name] += f[12] + f[13] }
        END { for (n in t) printf "%s=%d ", n, t[n] }'
}

# thread_split BEFORE AFTER TOTAL: "name a% ..." of the TOTAL ticks the process used between
# the two snapshots; "exited" is what threads that ended in between used (short-lived probe
# threads, for instance), which the live threads' counters no longer show.
thread_split() {
    awk -v a="$1" -v b="$2" -v total="$3" 'BEGIN {
        n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); t0[kv[1]] = kv[2] }
        n = split(b, y, " "); for (i = 1; i <= n; i++) { split(y[i], kv, "="); d[kv[1]] = kv[2] - t0[kv[1]]; s += d[kv[1]] }
        if (total > s) d["exited"] = total - s
        if (total < s) total = s
        for (k in d) if (total > 0) out = out sprintf("%s%s %.0f%%", out == "" ? "" : " ", k, 100 * d[k] / total)
        print out }'
}

# others_ticks: CPU time in clock ticks of every user process on the machine that this run did
# not start (not in our process groups, not this shell), including what they reaped from their
# children (cutime + cstime), so that builds whose compilers come and go are counted. Kernel
# threads are left out: on loopback, ksoftirqd mostly works for us. Its change over a run says
# how much of the cores other users of the machine took.
others_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v groups=" ${GROUPS_STARTED[*]} " -v self="$$" '
        {
            pid = $1
            sub(/^[^(]*\(.*\) /, "")
            # now $2 = ppid, $3 = pgrp, $12..$15 = utime stime cutime cstime
            if (pid == 2 || $2 == 2 || pid == self || index(groups, " " $3 " ")) next
            t += $12 + $13 + $14 + $15
        }
        END { print t + 0 }'
}

# ------------------------------------------------------------------ targets

# What each target is: PORT[t] its port(s) (two for a pair of instances: the load is split),
# CPUG[t] the process groups whose CPU is its cost ("" for direct), LBPID[t] the pid of ours
# (for the thread split), REDIS[t] the Redis port it shares a limit through, IDLE_OK[t] 1 if
# the idle row applies (not to a bare backend).
declare -A PORT CPUG LBPID REDIS IDLE_OK

# start_ours NAME LOGNAME ARG...: ours with these arguments before PORT SERVER..., listening
# on an ephemeral port, which it names on stderr. SERVERS: the servers' ports.
start_ours() {
    local name=$1 logname=$2 extra=() line pid
    shift 2
    read -r -a extra <<<"$LB_EXTRA"
    start_group "$OUT/$logname.log" "$LB" "$@" "${extra[@]}" 0 $SERVERS
    pid=$STARTED
    line=$(wait_line "$OUT/$logname.log" 'listening on 127\.0\.0\.1:[0-9]+' "$pid" 10)
    line=${line##*listening on 127.0.0.1:}
    line=${line%%[!0-9]*}
    PORT[$name]="${PORT[$name]:+${PORT[$name]} }$line"
    CPUG[$name]="${CPUG[$name]:+${CPUG[$name]} }$pid"
    LBPID[$name]=$pid
    IDLE_OK[$name]=1
}

# ------------------------------------------------------------------ clients

# wrk_start PORT CONNS CLOSE SECONDS THREADS OUTFILE: one wrk in the background (its own
# process group), added to WAIT_PIDS.
wrk_start() {
    local port=$1 conns=$2 close=$3 secs=$4 threads=$5 out=$6 hdr=()
    ((close)) && hdr=(-H 'Connection: close')
    ((conns < threads)) && threads=$conns
    setsid timeout -k 5 $((secs + 30)) wrk -t "$threads" -c "$conns" -d "${secs}s" \
        --timeout "${WRK_TIMEOUT}s" -s "$WRK_LUA" "${hdr[@]}" "http://127.0.0.1:$port/small" \
        </dev/null >"$out" 2>&1 &
    WAIT_PIDS+=($!)
}

wrk_wait() {
    local p
    for p in "${WAIT_PIDS[@]}"; do wait "$p" || true; done
    WAIT_PIDS=()
}

# run_wrk PORTS CONNS CLOSE SECONDS: wrk against each port of PORTS at once (CONNS and the
# threads split evenly). Sets R_REQS (2xx/3xx replies), R_RATE (per second), R_ERRS (socket
# errors + timeouts + non-2xx), R_BUSY (replies/s x mean latency: how many connections were
# really being served), R_P99 and R_MEAN (latency, us; with several ports the largest p99).
run_wrk() {
    local ports=($1) conns=$2 close=$3 secs=$4 n i threads
    n=${#ports[@]}
    threads=$((WRK_THREADS / n))
    ((threads > 0)) || threads=1
    for ((i = 0; i < n; i++)); do
        wrk_start "${ports[i]}" $((conns / n)) "$close" "$secs" "$threads" "$WORK/wrk.$i.out"
    done
    wrk_wait
    read -r R_REQS R_ERRS R_RATE R_BUSY R_P99 R_MEAN < <(
        for ((i = 0; i < n; i++)); do
            grep -m1 '^WRK ' "$WORK/wrk.$i.out" || echo "WRK 0 1 0 0 0 0 0 0 0 0"
        done | awk '{
            # WRK requests duration_us non2xx connect read write timeout mean_us p50_us p99_us
            good = $2 - $4; rate = good / ($3 / 1e6)
            reqs += good; errs += $4 + $5 + $6 + $7 + $8; r += rate; busy += rate * $9 / 1e6
            msum += $9 * good; if ($11 > p99) p99 = $11
        }
        END { printf "%d %d %.0f %.1f %d %.0f\n", reqs, errs, r, busy, p99, reqs ? msum / reqs : 0 }')
}

# run_bulk PORT: BULK_CLIENTS curl loops in parallel, each downloading /big BULK_REPEAT times
# (a new connection each). Sets R_RATE (MB/s of bodies that came back whole, MB = 1e6 B),
# R_REQS (downloads), R_ERRS (wrong status or size), R_BUSY, R_P99, R_MEAN ("").
run_bulk() {
    local port=$1 i t0 t1 loops=() loop from=${#GROUPS_STARTED[@]}
    loop='for ((j = 0; j < $1; j++)); do
            curl -s -o /dev/null --max-time "$2" -w "%{http_code} %{size_download}\n" "$3" || true
          done'
    rm -f "$WORK"/bulk.*
    t0=$(now_ns)
    for ((i = 0; i < BULK_CLIENTS; i++)); do
        start_group "$WORK/bulk.$i" bash -c "$loop" _ "$BULK_REPEAT" "$BULK_TIMEOUT" \
            "http://127.0.0.1:$port/big"
        loops+=("$STARTED")
    done
    for i in "${loops[@]}"; do wait "$i" || true; done
    t1=$(now_ns)
    GROUPS_STARTED=("${GROUPS_STARTED[@]:0:from}")
    read -r R_REQS R_ERRS R_RATE < <(cat "$WORK"/bulk.* | awk -v want="$BIG_BYTES" \
        -v ns=$((t1 - t0)) '
        { n++; if ($1 == "200" && $2 == want) good += $2; else bad++ }
        END { printf "%d %d %.0f\n", n, bad, good / ns * 1e3 }')
    R_BUSY="" R_P99="" R_MEAN=""
}

# ------------------------------------------------------------------ idle connections

IDLE_PID=""

# idle_open PORT: IDLE keep-alive connections to PORT, each served once, then idle; returns
# once they all are (or failed). Sets IDLE_READY ("open=N failed=F secs=S").
idle_open() {
    local port=$1 line
    start_group "$WORK/idle.log" python3 "$HERE/bench/idle_conns.py" --window "$IDLE_WINDOW" \
        --hold $((DURATION + 300)) "$port" "$IDLE"
    IDLE_PID=$STARTED
    line=$(wait_line "$WORK/idle.log" '^ready ' "$IDLE_PID" 120)
    IDLE_READY=${line#ready }
}

# idle_still_open: sets IDLE_LEFT, how many of the idle connections the proxy has not closed,
# and IDLE_STATUS, the helper's whole report (how the others ended).
idle_still_open() {
    local before line deadline=$((SECONDS + 10))
    before=$(grep -c '^status ' "$WORK/idle.log" || true)
    kill -USR1 "$IDLE_PID"
    until (($(grep -c '^status ' "$WORK/idle.log" || true) > before)); do
        kill -0 "$IDLE_PID" 2>/dev/null || die "the idle helper died: $(tail -3 "$WORK/idle.log")"
        ((SECONDS < deadline)) || die "the idle helper did not answer within 10 s"
        sleep 0.05
    done
    line=$(grep '^status ' "$WORK/idle.log" | tail -1)
    IDLE_STATUS=${line#status }
    line=${line#status open=}
    IDLE_LEFT=${line%% *}
}

# idle_close: stops the helper (its sockets are reset, so no TIME_WAIT is left behind).
idle_close() {
    local i
    [[ -n $IDLE_PID ]] || return 0
    stop_group "$IDLE_PID"
    wait "$IDLE_PID" 2>/dev/null || true
    for i in "${!GROUPS_STARTED[@]}"; do
        [[ ${GROUPS_STARTED[i]} != "$IDLE_PID" ]] || unset 'GROUPS_STARTED[i]'
    done
    GROUPS_STARTED=("${GROUPS_STARTED[@]}")
    IDLE_PID=""
}

# redis_counts PORT: "CALLS COMMANDS": the lease scripts Redis has run (EVALSHA and EVAL, each
# one round trip from a balancer) and every command it has processed (the scripts' own
# included), since it started.
redis_counts() {
    redis-cli -p "$1" INFO all | tr -d '\r' | awk -F'[:=,]' '
        $1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" || $1 == "cmdstat_evalsha_ro" || $1 == "cmdstat_eval_ro" { calls += $3 }
        $1 == "total_commands_processed" { total = $2 }
        END { printf "%d %d\n", calls, total }'
}

# ------------------------------------------------------------------ measuring

# measure WORKLOAD TARGET REP: one bounded run, one CSV line:
# workload,target,rep,value,requests,errors,cpu_us_per_req,proxy_cpu_pct,busy_conns,
# others_cpu_pct,lb_threads,p99_us,mean_us,extra,extra2
# (extra: for idle rows the idle connections still open at the end, for a shared pair the
# Redis calls per second; extra2: the pair's Redis commands per second).
measure() {
    local w=$1 t=$2 rep=$3 ports=${PORT[$2]} groups=${CPUG[$2]} lbpid=${LBPID[$2]:-}
    local redis=${REDIS[$2]:-} t0=0 t1=0 cpu="" busy_pct="" start end o0 o1 foreign
    local th0="" th1="" split="" extra="" extra2="" r0=0 r1=0 c0=0 c1=0 idle_note=""
    if [[ $w == idle-* ]]; then
        idle_open "${ports%% *}"
        idle_note="  idle: $IDLE_READY"
    fi
    [[ -z $groups ]] || t0=$(group_ticks $groups)
    [[ -z $lbpid ]] || th0=$(thread_ticks "$lbpid")
    [[ -z $redis ]] || read -r r0 c0 < <(redis_counts "$redis")
    o0=$(others_ticks)
    start=$(now_ns)
    case $w in
        new-c*) run_wrk "$ports" "${w#new-c}" 1 "$DURATION" ;;
        ka-c*) run_wrk "$ports" "${w#ka-c}" 0 "$DURATION" ;;
        idle-ka-c*) run_wrk "$ports" "${w#idle-ka-c}" 0 "$DURATION" ;;
        bulk) run_bulk "$ports" ;;
    esac
    end=$(now_ns)
    o1=$(others_ticks)
    # What other users of the machine took, in % of one core.
    foreign=$(awk -v d=$((o1 - o0)) -v hz="$CLK_TCK" -v ns=$((end - start)) \
        'BEGIN { f = 100 * d / hz / (ns / 1e9); printf "%.0f", (f < 0) ? 0 : f }')
    if [[ -n $redis ]]; then
        read -r r1 c1 < <(redis_counts "$redis")
        extra=$(awk -v d=$((r1 - r0)) -v ns=$((end - start)) 'BEGIN { printf "%.0f", d / (ns / 1e9) }')
        # Less the INFO that read c0.
        extra2=$(awk -v d=$((c1 - c0 - 1)) -v ns=$((end - start)) 'BEGIN { printf "%.0f", d / (ns / 1e9) }')
        idle_note="  redis ${extra} calls/s, ${extra2} commands/s"
    fi
    if [[ $w == idle-* ]]; then
        idle_still_open
        extra=$IDLE_LEFT
        idle_note="$idle_note; at the end: $IDLE_STATUS"
        idle_close
    fi
    if [[ -n $groups ]]; then
        local g
        for g in $groups; do kill -0 "$g" 2>/dev/null || die "$t (pid $g) died during $w"; done
        t1=$(group_ticks $groups)
        [[ -z $lbpid ]] || { th1=$(thread_ticks "$lbpid"); split=$(thread_split "$th0" "$th1" $((t1 - t0))); }
        # CPU per request (wrk) or per download (bulk), in microseconds.
        cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$R_REQS" \
            'BEGIN { if (n > 0) printf "%.1f", d / hz * 1e6 / n }')
        busy_pct=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v ns=$((end - start)) \
            'BEGIN { printf "%.0f", 100 * d / hz / (ns / 1e9) }')
    fi
    printf '%s,%s,%d,%s,%d,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$w" "$t" "$rep" "$R_RATE" "$R_REQS" \
        "$R_ERRS" "$cpu" "$busy_pct" "$R_BUSY" "$foreign" "$split" "$R_P99" "$R_MEAN" "$extra" "$extra2" \
        >>"$OUT/runs.csv"
    log "$(printf '%-11s %-12s rep %d: %8s %s  errors %d  cpu/req %s us  proxy cpu %s%%  others %s%%%s%s' \
        "$w" "$t" "$rep" "$R_RATE" "$([[ $w == bulk ]] && echo MB/s || echo req/s)" "$R_ERRS" \
        "${cpu:--}" "${busy_pct:--}" "$foreign" \
        "${R_BUSY:+  busy conns $R_BUSY  p99 $(awk -v u="$R_P99" 'BEGIN { printf "%.2f", u / 1e3 }') ms}" \
        "$idle_note")${split:+  threads: $split}"
}

# run_cells "WORKLOAD..." TARGET...: every workload, REPS times, on every target it applies to;
# the targets' order is reversed every other rep.
run_cells() {
    local wls=($1) w rep t order=() i
    shift
    for w in "${wls[@]}"; do
        for ((rep = 1; rep <= REPS; rep++)); do
            order=("$@")
            if ((rep % 2 == 0)); then
                order=()
                for ((i = $#; i >= 1; i--)); do order+=("${!i}"); done
            fi
            for t in "${order[@]}"; do
                [[ $w != idle-* || ${IDLE_OK[$t]:-0} == 1 ]] || continue
                measure "$w" "$t" "$rep"
                sleep "$PAUSE"
            done
        done
    done
}

# warm_up TARGET...: one second of new connections on each, not recorded.
warm_up() {
    local t
    for t in "$@"; do run_wrk "${PORT[$t]}" 16 1 1; done
}

# ------------------------------------------------------------------ report helpers

# median WORKLOAD TARGET COLUMN: the median of one CSV column over the reps ("" if none).
median() {
    awk -F, -v w="$1" -v t="$2" -v c="$3" '$1 == w && $2 == t && $c != "" { print $c }' \
        "$OUT/runs.csv" | sort -g | awk '{ v[NR] = $1 }
        END {
            if (NR == 0) exit
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.1f", m
        }'
}

# paired_ratio WORKLOAD A B [WORKLOAD_B]: the median over reps of A/B within the same rep (the
# two ran next to each other, so slow drift and other users of the machine cancel out better
# than in a ratio of medians). B's runs are of WORKLOAD_B if given (same rep number).
paired_ratio() {
    awk -F, -v w="$1" -v a="$2" -v b="$3" -v wb="${4:-$1}" '$1 == w && $2 == a { va[$3] = $4 }
        $1 == wb && $2 == b { vb[$3] = $4 }
        END { for (r in va) if (vb[r] > 0) print va[r] / vb[r] }' "$OUT/runs.csv" |
        sort -g | awk '{ v[NR] = $1 }
        END {
            if (NR == 0) { printf "-"; exit }
            printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

int() { awk -v a="$1" 'BEGIN { if (a == "") printf "-"; else printf "%.0f", a }'; }
ms() { awk -v a="$1" 'BEGIN { if (a == "") printf "-"; else printf "%.2f ms", a / 1e3 }'; }

# errors_of WORKLOAD TARGET...: "name n / name n" errors over all runs.
errors_of() {
    local w=$1
    shift
    awk -F, -v w="$w" -v names="$*" '$1 == w { e[$2] += $6; seen[$2] = 1 }
        END { n = split(names, t, " "); for (i = 1; i <= n; i++) if (seen[t[i]])
            out = out sprintf("%s%s %d", out == "" ? "" : ", ", t[i], e[t[i]]); print out }' "$OUT/runs.csv"
}

others_note() {
    awk -F, -v cores="$(nproc)" -v pat="$1" 'NR > 1 && $2 ~ pat { v[++n] = $10; s += $10; if ($10 > m) m = $10 }
        END { if (n) printf "Other processes on the machine took a mean %.0f %% (max %.0f %%) of one core during these runs (of %d00 %%).\n", s / n, m, cores }' "$OUT/runs.csv"
}

# ------------------------------------------------------------------ tcp section

make_files() {
    mkdir -p "$WORK/www" "$WORK/tmp"
    head -c "$SMALL_BYTES" /dev/urandom >"$WORK/www/small"
    head -c "$BIG_BYTES" /dev/urandom >"$WORK/www/big"
    # nginx workers run as an unprivileged user when started by root; mktemp -d made 0700.
    chmod 755 "$WORK" "$WORK/www"
    chmod 644 "$WORK/www/small" "$WORK/www/big"
}

# nginx as the tcp section's backend: keep-alive capable and fast enough not to be the
# bottleneck (sendfile); the tcp rows stay comparable with the older tables.
nginx_backend_conf() {
    local name=$1 port=$2
    cat <<EOF
worker_processes 2;
daemon off;
master_process on;
pid $WORK/$name.pid;
error_log $WORK/$name.error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp/body;
  proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fastcgi;
  uwsgi_temp_path $WORK/tmp/uwsgi;
  scgi_temp_path $WORK/tmp/scgi;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port backlog=4096;
    root $WORK/www;
    add_header X-Backend $name always;
    location = /healthcheck { default_type text/plain; return 200 "0\n0\n"; }
  }
}
EOF
}

# The same bound as ours: at most N client connections bridged (frontend maxconn), the rest
# wait in the kernel's accept queue. tune.bufsize 64k as the lab uses; no splice.
haproxy_tcp_conf() {
    local port=$1 b1=$2 b2=$3
    cat <<EOF
global
  maxconn 4096
  nbthread 2
  tune.bufsize 65536
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout queue 60s
frontend fe
  bind 127.0.0.1:$port
  backlog 4096
  maxconn $LIMIT
  default_backend bk
backend bk
  balance leastconn
  option httpchk GET /healthcheck
  http-check expect status 200
  server b1 127.0.0.1:$b1 check inter 5s
  server b2 127.0.0.1:$b2 check inter 5s
EOF
}

# sanity_tcp NAME: the health answer and both files come back whole through the target.
sanity_tcp() {
    local name=$1 port=${PORT[$1]} body size
    body=$(curl -s --max-time 5 "http://127.0.0.1:$port/healthcheck") || true
    [[ $body == $'0\n0' ]] || die "$name: /healthcheck gave '$body'"
    size=$(curl -s --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' \
        "http://127.0.0.1:$port/small") || true
    [[ $size == "200 $SMALL_BYTES" ]] || die "$name: /small gave '$size'"
    size=$(curl -s --max-time 30 -o /dev/null -w '%{http_code} %{size_download}' \
        "http://127.0.0.1:$port/big") || true
    [[ $size == "200 $BIG_BYTES" ]] || die "$name: /big gave '$size'"
}

TCP_TARGETS=(direct haproxy lb)

tcp_workloads() {
    local c w
    for w in $(for c in $CONNS; do echo "new-c$c"; done) "ka-c$KA_CONNS" bulk; do
        wanted "$w" && echo "$w"
    done
}

tcp_section() {
    local from=${#GROUPS_STARTED[@]} i port wls
    wls=$(echo $(tcp_workloads))
    [[ -n $wls ]] || return 0
    log "tcp section: nginx backends, HAProxy mode tcp, ours -N $LIMIT -R $PROBE_EVERY"
    local ports=()
    for i in 1 2; do
        port=$(free_port)
        nginx_backend_conf "b$i" "$port" >"$WORK/b$i.conf"
        start_group "$OUT/b$i.log" nginx -p "$WORK" -e "$WORK/b$i.error.log" -c "$WORK/b$i.conf"
        wait_port "$port" "$STARTED"
        ports+=("$port")
    done
    PORT[direct]=${ports[0]} CPUG[direct]=""
    port=$(free_port)
    haproxy_tcp_conf "$port" "${ports[@]}" >"$WORK/haproxy.cfg"
    start_group "$OUT/haproxy.log" haproxy -db -f "$WORK/haproxy.cfg"
    wait_port "$port" "$STARTED"
    PORT[haproxy]=$port CPUG[haproxy]=$STARTED
    SERVERS="${ports[*]}"
    start_ours lb lb -N "$LIMIT" -R "$PROBE_EVERY"
    IDLE_OK[lb]=0
    for i in "${TCP_TARGETS[@]}"; do sanity_tcp "$i"; done
    warm_up "${TCP_TARGETS[@]}"
    run_cells "$wls" "${TCP_TARGETS[@]}"
    stop_from "$from"
}

tcp_report() {
    local w unit d h l hc lc lb_busy h_busy errs wls
    wls=$(echo $(tcp_workloads))
    [[ -n $wls ]] || return 0
    echo "### tcp mode (nginx backends)"
    echo
    echo "Medians of $REPS run(s), ${DURATION} s per wrk run; N = $LIMIT; ours: -N $LIMIT -R $PROBE_EVERY${LB_EXTRA:+ $LB_EXTRA}; HAProxy mode tcp, frontend maxconn $LIMIT."
    echo
    echo "| workload | unit | direct | HAProxy | ours | ours/HAProxy | ours/direct | HAProxy cpu/conn | ours cpu/conn | errors (all runs) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    for w in $wls; do
        unit="req/s"
        [[ $w == bulk ]] && unit="MB/s"
        d=$(median "$w" direct 4)
        h=$(median "$w" haproxy 4)
        l=$(median "$w" lb 4)
        hc=$(median "$w" haproxy 7)
        lc=$(median "$w" lb 7)
        errs=$(errors_of "$w" "${TCP_TARGETS[@]}")
        if [[ $w == bulk ]]; then
            hc="$(awk -v a="$hc" 'BEGIN { printf "%.0f ms", a / 1e3 }')"
            lc="$(awk -v a="$lc" 'BEGIN { printf "%.0f ms", a / 1e3 }')"
        else
            hc="$(int "$hc") us"
            lc="$(int "$lc") us"
        fi
        if [[ $w == ka-* ]]; then
            h="$(int "$h") ($(median "$w" haproxy 9) busy)"
            l="$(int "$l") ($(median "$w" lb 9) busy)"
            d="$(int "$d") ($(median "$w" direct 9) busy)"
        else
            d=$(int "$d") h=$(int "$h") l=$(int "$l")
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$w" "$unit" "$d" "$h" "$l" \
            "$(paired_ratio "$w" lb haproxy)" "$(paired_ratio "$w" lb direct)" "$hc" "$lc" "$errs"
    done
    echo
    echo "cpu/conn: CPU time (user + system, all threads) of the proxy per request (per 100 MiB"
    echo "download for bulk). \"busy\" (keep-alive): replies/s x mean latency, the number of client"
    echo "connections really being served."
    others_note '^(direct|haproxy|lb)$'
    echo
}

tcp_verdict() {
    local w h l d r verdict wls
    wls=$(echo $(tcp_workloads))
    [[ -n $wls ]] || return 0
    echo "tcp-mode targets (issue 3):"
    for w in $wls; do
        [[ $w == new-* ]] || continue
        h=$(median "$w" haproxy 4)
        l=$(median "$w" lb 4)
        r=$(paired_ratio "$w" lb haproxy)
        verdict=$(awk -v r="$r" 'BEGIN { print (r >= 1) ? "met" : "NOT met" }')
        echo "  $w: ours $(int "$l") vs HAProxy $(int "$h") req/s (${r}x, target 1.0x): $verdict"
    done
    [[ " $wls " == *" bulk "* ]] || return 0
    d=$(median bulk direct 4)
    l=$(median bulk lb 4)
    r=$(paired_ratio bulk lb direct)
    verdict=$(awk -v r="$r" 'BEGIN { print (r >= 0.7) ? "met" : "NOT met" }')
    echo "  bulk: ours $(int "$l") MB/s = ${r}x direct (target 0.70x, HAProxy $(paired_ratio bulk haproxy direct)x): $verdict"
}

# shellcheck source=scripts/bench/http.sh
source "$HERE/bench/http.sh"
# shellcheck source=scripts/bench/shared.sh
source "$HERE/bench/shared.sh"

# ------------------------------------------------------------------ main

machine() {
    echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -sr)"
    echo "tools:   $(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)$(section shared && echo ", redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-)"), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "open-file limit: $(ulimit -n); http and shared sections on $HTTP_BACKEND backends"
}

report() {
    {
        section tcp && tcp_report
        section http && http_report
        section shared && shared_report
    } >"$OUT/table.md"
    cat "$OUT/table.md"
    section tcp && tcp_verdict
    section http && http_verdict
    section shared && shared_verdict
    return 0
}

main() {
    parse_args "$@"
    if ((REPORT_ONLY)); then
        [[ -s $OUT/runs.csv ]] || die "$OUT/runs.csv: no runs to report"
        report
        return 0
    fi
    need_tools
    need_binaries
    raise_fd_limit
    CLK_TCK=$(getconf CLK_TCK)
    mkdir -p "$OUT"
    WORK=$(mktemp -d /tmp/lb-bench.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    make_files
    machine | tee "$OUT/machine.txt"
    echo "workload,target,rep,value,requests,errors,cpu_us_per_req,proxy_cpu_pct,busy_conns,others_cpu_pct,lb_threads,p99_us,mean_us,extra,extra2" \
        >"$OUT/runs.csv"
    local began=$SECONDS
    section tcp && tcp_section
    section http && http_section
    section shared && shared_section
    log "measured in $((SECONDS - began)) s"
    echo
    report | tee "$OUT/report.txt"
}

main "$@"
