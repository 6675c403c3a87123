#!/usr/bin/env bash
# scripts/bench.sh: a benchmark (not a test) of our balancer against direct access and HAProxy.
#
# Starts 2 nginx backends, HAProxy (mode tcp, balance leastconn, frontend maxconn N) and our
# balancer (-N N) on 127.0.0.1, then measures, for each of them in the same run:
#   new-c4, new-c16, new-c64  wrk -H 'Connection: close' on a 128 B file (a new connection
#                             per request), 4/16/64 client connections;
#   ka-c64                    keep-alive wrk on the same file, 64 client connections;
#   bulk                      parallel curl downloads of a 100 MiB file, every body size checked.
# Each workload runs --reps times; the order of the targets alternates between reps so that
# drift favours none. It prints medians, our ratio to HAProxy and to direct, and the proxy's
# CPU time per connection (utime+stime from /proc/PID/stat before/after each run, divided by
# the requests served). Raw runs go to OUT/runs.csv, the table to OUT/table.md.
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
DURATION=10
LIMIT=4
PROBE_EVERY=5
LB=$ROOT/target/release/loadbalancer
LB_EXTRA=""
OUT=$ROOT/bench-out/bench
CONNS="4 16 64"
KA_CONNS=64
BULK_CLIENTS=4
BULK_REPEAT=3
BULK_TIMEOUT=120
WRK_THREADS=2
WRK_TIMEOUT=2
PAUSE=1
ONLY=""
REPORT_ONLY=0

usage() {
    echo "usage: scripts/bench.sh [--reps R] [--duration S] [--quick] [-N n] [-R r] [--lb PATH]" \
        "[--lb-args 'ARGS'] [--workloads LIST] [--out DIR] [--report-only] [-h]"
}

help() {
    usage
    cat <<EOF

  --reps R        runs of each workload on each target; the table shows medians (default $REPS)
  --duration S    seconds per wrk run (default $DURATION)
  --quick         --reps 1 --duration 3, one download per bulk client: a smoke run
  -N n            the global bound: our -N and HAProxy's maxconn (default $LIMIT)
  -R r            our balancer's -R, a probe round every r connections (default $PROBE_EVERY)
  --lb PATH       the balancer binary (default target/release/loadbalancer, built if missing)
  --lb-args ARGS  extra words for our balancer's command line, e.g. '--balance least-conn'
  --workloads W   comma list among new-c4,new-c16,new-c64,ka-c64,bulk (default all)
  --out DIR       where runs.csv, table.md and the logs go (default bench-out/bench)
  --report-only   measure nothing: print the table again from OUT/runs.csv (give the same
                  --reps, --duration, -N, -R as the run had; they only label the table)
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
            --reps) REPS=${2:?--reps needs a number}; shift ;;
            --duration) DURATION=${2:?--duration needs seconds}; shift ;;
            --quick) REPS=1; DURATION=3; BULK_REPEAT=1 ;;
            -N) LIMIT=${2:?-N needs a number}; shift ;;
            -R) PROBE_EVERY=${2:?-R needs a number}; shift ;;
            --lb) LB=${2:?--lb needs a path}; shift ;;
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
}

# ------------------------------------------------------------------ tools

need_tools() {
    local missing=() pkgs=()
    command -v wrk >/dev/null || { missing+=(wrk); pkgs+=(wrk); }
    command -v haproxy >/dev/null || { missing+=(haproxy); pkgs+=(haproxy); }
    command -v nginx >/dev/null || { missing+=(nginx); pkgs+=(nginx); }
    command -v curl >/dev/null || { missing+=(curl); pkgs+=(curl); }
    command -v python3 >/dev/null || { missing+=(python3); pkgs+=(python3); }
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

need_balancer() {
    [[ -x $LB ]] && return 0
    [[ $LB == "$ROOT/target/release/loadbalancer" ]] || die "$LB: not an executable"
    log "building the balancer (cargo build --release)"
    (cd "$ROOT" && cargo build --release --bin loadbalancer) >&2
}

# ------------------------------------------------------------------ processes

WORK=""
WAIT_PID=""       # the client (wrk) we are waiting on, if any
# shellcheck source=scripts/bench/procs.sh
source "$HERE/bench/procs.sh"

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    [[ -z $WAIT_PID ]] || stop_group "$WAIT_PID"
    for ((i = ${#GROUPS_STARTED[@]} - 1; i >= 0; i--)); do
        stop_group "${GROUPS_STARTED[i]}"
    done
    wait 2>/dev/null || true
    [[ -z $WORK || ! -d $WORK ]] || rm -rf -- "$WORK"
    exit "$rc"
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

# ticks PID: CPU time (user + system, all threads) of PID in clock ticks, from /proc/PID/stat.
ticks() {
    local stat rest f
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) } # the fields after "(comm)", which may itself hold spaces
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12])) # fields 14 (utime) and 15 (stime) of proc(5)
}

now_ns() { date +%s%N; }

# thread_ticks PID: "NAME=TICKS ..." per thread name (comm) of PID, summed over its threads, so
# a run can say which kind of thread (accept, worker, health) took the CPU.
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*/stat; do cat "$t" 2>/dev/null || true; done | awk '
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
# how much of the 2 cores other users of the machine took.
others_ticks() {
    local f
    for f in /proc/[0-9]*/stat; do cat "$f" 2>/dev/null || true; done | awk \
        -v groups=" ${GROUPS_STARTED[*]} " -v self="$$" '
        {
            pid = $1
            sub(/^.*\) /, "")
            # now $2 = ppid, $3 = pgrp, $12..$15 = utime stime cutime cstime
            if (pid == 2 || $2 == 2 || pid == self || index(groups, " " $3 " ")) next
            t += $12 + $13 + $14 + $15
        }
        END { print t + 0 }'
}

# ------------------------------------------------------------------ setup

make_files() {
    mkdir -p "$WORK/www" "$WORK/tmp"
    head -c "$SMALL_BYTES" /dev/urandom >"$WORK/www/small"
    head -c "$BIG_BYTES" /dev/urandom >"$WORK/www/big"
    # nginx workers run as an unprivileged user when started by root; mktemp -d made 0700.
    chmod 755 "$WORK" "$WORK/www"
    chmod 644 "$WORK/www/small" "$WORK/www/big"
}

# nginx as the backend: keep-alive capable (our backend closes after each request, which
# would make ka-c64 measure reconnects) and fast enough not to be the bottleneck (sendfile).
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
haproxy_conf() {
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

declare -A PORT PID

start_backends() {
    local i port
    for i in 1 2; do
        port=$(free_port)
        nginx_backend_conf "b$i" "$port" >"$WORK/b$i.conf"
        start_group "$OUT/b$i.log" nginx -p "$WORK" -e "$WORK/b$i.error.log" -c "$WORK/b$i.conf"
        wait_port "$port" "$STARTED"
        PORT[b$i]=$port
    done
    PORT[direct]=${PORT[b1]}
    PID[direct]=""
}

start_haproxy() {
    local port
    port=$(free_port)
    haproxy_conf "$port" "${PORT[b1]}" "${PORT[b2]}" >"$WORK/haproxy.cfg"
    start_group "$OUT/haproxy.log" haproxy -db -f "$WORK/haproxy.cfg"
    wait_port "$port" "$STARTED"
    PORT[haproxy]=$port
    PID[haproxy]=$STARTED
}

# Ours listens on an ephemeral port and says which on stderr.
start_lb() {
    local extra=() deadline=$((SECONDS + 10)) line=""
    read -r -a extra <<<"$LB_EXTRA"
    start_group "$OUT/lb.log" "$LB" -N "$LIMIT" -R "$PROBE_EVERY" "${extra[@]}" 0 \
        "${PORT[b1]}" "${PORT[b2]}"
    PID[lb]=$STARTED
    until line=$(grep -o -m1 'listening on 127\.0\.0\.1:[0-9]*' "$OUT/lb.log" 2>/dev/null); do
        kill -0 "${PID[lb]}" 2>/dev/null || die "the balancer died at start: $(tail -3 "$OUT/lb.log")"
        ((SECONDS < deadline)) || die "the balancer did not say where it listens within 10 s"
        sleep 0.1
    done
    PORT[lb]=${line##*:}
}

# sanity NAME: the health answer and both files come back whole through the target.
sanity() {
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

# ------------------------------------------------------------------ clients

# run_wrk PORT CONNS CLOSE SECONDS: sets R_REQS (2xx/3xx replies), R_RATE (per second),
# R_ERRS (socket errors + timeouts + non-2xx), R_BUSY (replies/s x mean latency: how many
# connections were really being served).
run_wrk() {
    local port=$1 conns=$2 close=$3 secs=$4 hdr=() threads=$WRK_THREADS out=$WORK/wrk.out
    local tag reqs dur_us non2xx e_conn e_read e_write e_timeout mean_us p50 p99
    ((close)) && hdr=(-H 'Connection: close')
    ((conns < threads)) && threads=$conns
    setsid timeout -k 5 $((secs + 30)) wrk -t "$threads" -c "$conns" -d "${secs}s" \
        --timeout "${WRK_TIMEOUT}s" -s "$WRK_LUA" "${hdr[@]}" "http://127.0.0.1:$port/small" \
        </dev/null >"$out" 2>&1 &
    WAIT_PID=$!
    wait "$WAIT_PID" || true
    WAIT_PID=""
    read -r tag reqs dur_us non2xx e_conn e_read e_write e_timeout mean_us p50 p99 \
        < <(grep -m1 '^WRK ' "$out" || echo "WRK 0 1 0 0 0 0 0 0 0 0")
    R_REQS=$((reqs - non2xx))
    R_ERRS=$((non2xx + e_conn + e_read + e_write + e_timeout))
    R_RATE=$(awk -v r="$R_REQS" -v d="$dur_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    R_BUSY=$(awk -v r="$R_RATE" -v m="$mean_us" 'BEGIN { printf "%.1f", r * m / 1e6 }')
}

# run_bulk PORT: BULK_CLIENTS curl loops in parallel, each downloading /big BULK_REPEAT times
# (a new connection each). Sets R_RATE (MB/s of bodies that came back whole, MB = 1e6 B),
# R_REQS (downloads), R_ERRS (wrong status or size), R_BUSY ("").
run_bulk() {
    local port=$1 i t0 t1 loops=() loop
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
    read -r R_REQS R_ERRS R_RATE < <(cat "$WORK"/bulk.* | awk -v want="$BIG_BYTES" \
        -v ns=$((t1 - t0)) '
        { n++; if ($1 == "200" && $2 == want) good += $2; else bad++ }
        END { printf "%d %d %.0f\n", n, bad, good / ns * 1e3 }')
    R_BUSY=""
}

# ------------------------------------------------------------------ measuring

WORKLOADS=()
define_workloads() {
    local c all=() w
    for c in $CONNS; do all+=("new-c$c"); done
    all+=("ka-c$KA_CONNS" bulk)
    for w in "${all[@]}"; do
        [[ -z $ONLY || ,$ONLY, == *,$w,* ]] && WORKLOADS+=("$w")
    done
    ((${#WORKLOADS[@]} > 0)) || die "--workloads '$ONLY' names none of: ${all[*]}"
}

# measure WORKLOAD TARGET REP: one bounded run, one CSV line.
measure() {
    local w=$1 t=$2 rep=$3 port=${PORT[$2]} pid=${PID[$2]} t0=0 t1=0 cpu="" busy_pct=""
    local start end o0 o1 foreign th0="" th1="" split=""
    [[ -z $pid ]] || t0=$(ticks "$pid")
    [[ $t != lb ]] || th0=$(thread_ticks "$pid")
    o0=$(others_ticks)
    start=$(now_ns)
    case $w in
        new-c*) run_wrk "$port" "${w#new-c}" 1 "$DURATION" ;;
        ka-c*) run_wrk "$port" "${w#ka-c}" 0 "$DURATION" ;;
        bulk) run_bulk "$port" ;;
    esac
    end=$(now_ns)
    o1=$(others_ticks)
    # What other users of the machine took, in % of one core.
    foreign=$(awk -v d=$((o1 - o0)) -v hz="$CLK_TCK" -v ns=$((end - start)) \
        'BEGIN { f = 100 * d / hz / (ns / 1e9); printf "%.0f", (f < 0) ? 0 : f }')
    if [[ -n $pid ]]; then
        kill -0 "$pid" 2>/dev/null || die "$t (pid $pid) died during $w"
        t1=$(ticks "$pid")
        [[ $t != lb ]] || { th1=$(thread_ticks "$pid"); split=$(thread_split "$th0" "$th1" $((t1 - t0))); }
        # CPU per connection: microseconds per request (wrk) or per download (bulk).
        cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$R_REQS" \
            'BEGIN { if (n > 0) printf "%.1f", d / hz * 1e6 / n }')
        busy_pct=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v ns=$((end - start)) \
            'BEGIN { printf "%.0f", 100 * d / hz / (ns / 1e9) }')
    fi
    printf '%s,%s,%d,%s,%d,%d,%s,%s,%s,%s,%s\n' "$w" "$t" "$rep" "$R_RATE" "$R_REQS" "$R_ERRS" \
        "$cpu" "$busy_pct" "$R_BUSY" "$foreign" "$split" >>"$OUT/runs.csv"
    log "$(printf '%-8s %-8s rep %d: %8s %s  errors %d  cpu/conn %s us  proxy cpu %s%%  others %s%%%s' \
        "$w" "$t" "$rep" "$R_RATE" "$([[ $w == bulk ]] && echo MB/s || echo req/s)" "$R_ERRS" \
        "${cpu:--}" "${busy_pct:--}" "$foreign" "${R_BUSY:+  busy conns $R_BUSY}")${split:+  threads: $split}"
}

run_all() {
    local w rep t order
    echo "workload,target,rep,value,requests,errors,cpu_us_per_conn,proxy_cpu_pct,busy_conns,others_cpu_pct,lb_threads" \
        >"$OUT/runs.csv"
    for t in "${TARGETS[@]}"; do # warm-up, not recorded
        run_wrk "${PORT[$t]}" 16 1 1
    done
    for w in "${WORKLOADS[@]}"; do
        for ((rep = 1; rep <= REPS; rep++)); do
            order=("${TARGETS[@]}")
            ((rep % 2 == 1)) || order=("${TARGETS[2]}" "${TARGETS[1]}" "${TARGETS[0]}")
            for t in "${order[@]}"; do
                measure "$w" "$t" "$rep"
                sleep "$PAUSE"
            done
        done
    done
}

# ------------------------------------------------------------------ report

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

# paired_ratio WORKLOAD A B: the median over reps of A/B within the same rep (the two ran
# next to each other, so slow drift and other users of the machine cancel out better than in
# a ratio of medians).
paired_ratio() {
    awk -F, -v w="$1" -v a="$2" -v b="$3" '$1 == w && $2 == a { va[$3] = $4 }
        $1 == w && $2 == b { vb[$3] = $4 }
        END { for (r in va) if (vb[r] > 0) print va[r] / vb[r] }' "$OUT/runs.csv" |
        sort -g | awk '{ v[NR] = $1 }
        END {
            if (NR == 0) { printf "-"; exit }
            printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

int() { awk -v a="$1" 'BEGIN { if (a == "") printf "-"; else printf "%.0f", a }'; }

report() {
    local w unit d h l hc lc lb_busy h_busy errs md=$OUT/table.md
    {
        echo "Medians of $REPS run(s), ${DURATION} s per wrk run; N = $LIMIT; our balancer: -N $LIMIT -R $PROBE_EVERY${LB_EXTRA:+ $LB_EXTRA}."
        echo
        echo "| workload | unit | direct | HAProxy | ours | ours/HAProxy | ours/direct | HAProxy cpu/conn | ours cpu/conn | errors (all runs) |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
        for w in "${WORKLOADS[@]}"; do
            unit="req/s"
            [[ $w == bulk ]] && unit="MB/s"
            d=$(median "$w" direct 4)
            h=$(median "$w" haproxy 4)
            l=$(median "$w" lb 4)
            hc=$(median "$w" haproxy 7)
            lc=$(median "$w" lb 7)
            errs=$(awk -F, -v w="$w" '$1 == w { e[$2] += $6 }
                END { printf "d %d / h %d / o %d", e["direct"], e["haproxy"], e["lb"] }' "$OUT/runs.csv")
            if [[ $w == bulk ]]; then
                hc="$(awk -v a="$hc" 'BEGIN { printf "%.0f ms", a / 1e3 }')"
                lc="$(awk -v a="$lc" 'BEGIN { printf "%.0f ms", a / 1e3 }')"
            else
                hc="$(int "$hc") us"
                lc="$(int "$lc") us"
            fi
            if [[ $w == ka-* ]]; then
                h_busy=$(median "$w" haproxy 9)
                lb_busy=$(median "$w" lb 9)
                h="$(int "$h") ($h_busy busy)"
                l="$(int "$l") ($lb_busy busy)"
                d="$(int "$d") ($(median "$w" direct 9) busy)"
                printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$w" "$unit" \
                    "$d" "$h" "$l" "$(paired_ratio "$w" lb haproxy)" \
                    "$(paired_ratio "$w" lb direct)" "$hc" "$lc" "$errs"
            else
                printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$w" "$unit" \
                    "$(int "$d")" "$(int "$h")" "$(int "$l")" "$(paired_ratio "$w" lb haproxy)" \
                    "$(paired_ratio "$w" lb direct)" "$hc" "$lc" "$errs"
            fi
        done
        echo
        echo "Ratios: the median over reps of the ratio within a rep (targets run back to back)."
        echo "cpu/conn: CPU time (user + system, all threads) of the proxy process per request"
        echo "(per 100 MiB download for bulk). \"busy\" (keep-alive): replies/s x mean latency, the"
        echo "number of client connections really being served (approximate)."
        awk -F, -v cores="$(nproc)" 'NR > 1 { v[++n] = $10; s += $10; if ($10 > m) m = $10 }
            END { if (n) printf "\nOther processes on the machine took a mean %.0f %% (max %.0f %%) of one core during the runs (of %d00 %%).\n", s / n, m, cores }' "$OUT/runs.csv"
    } >"$md"
    cat "$md"
    echo
    targets_verdict
}

# The targets of issue 3: new-connection rate >= HAProxy's at every concurrency, bulk >= 0.7x direct.
targets_verdict() {
    local w h l d r verdict
    echo "Targets (issue 3):"
    for w in "${WORKLOADS[@]}"; do
        [[ $w == new-* ]] || continue
        h=$(median "$w" haproxy 4)
        l=$(median "$w" lb 4)
        r=$(paired_ratio "$w" lb haproxy)
        verdict=$(awk -v r="$r" 'BEGIN { print (r >= 1) ? "met" : "NOT met" }')
        echo "  $w: ours $(int "$l") vs HAProxy $(int "$h") req/s (${r}x): $verdict"
    done
    [[ " ${WORKLOADS[*]} " == *" bulk "* ]] || return 0
    d=$(median bulk direct 4)
    l=$(median bulk lb 4)
    r=$(paired_ratio bulk lb direct)
    verdict=$(awk -v r="$r" 'BEGIN { print (r >= 0.7) ? "met" : "NOT met" }')
    echo "  bulk: ours $(int "$l") MB/s = ${r}x direct (target 0.70x, HAProxy $(paired_ratio bulk haproxy direct)x): $verdict"
}

machine() {
    echo "date:    $(date)"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -sr)"
    echo "tools:   $(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
}

main() {
    parse_args "$@"
    if ((REPORT_ONLY)); then
        [[ -s $OUT/runs.csv ]] || die "$OUT/runs.csv: no runs to report"
        define_workloads
        report
        return 0
    fi
    need_tools
    need_balancer
    CLK_TCK=$(getconf CLK_TCK)
    mkdir -p "$OUT"
    WORK=$(mktemp -d /tmp/lb-bench.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    make_files
    start_backends
    start_haproxy
    start_lb
    TARGETS=(direct haproxy lb)
    local t
    for t in "${TARGETS[@]}"; do sanity "$t"; done
    define_workloads
    machine | tee "$OUT/machine.txt"
    run_all
    echo
    report | tee "$OUT/report.txt"
}

main "$@"
