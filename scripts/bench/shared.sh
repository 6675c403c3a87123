# The shared section of scripts/bench.sh (sourced by it): two instances of ours sharing one
# limit N through Redis against one instance with N alone, in front of the same two `backend`
# servers:
#   s-one   ours --mode http -N N -R 1000000;
#   s-pair  two of ours --mode http -N N -R 1000000 --shared-limit redis://127.0.0.1:PORT
#           --shared-name bench-PID, each given half of the client connections (two wrk at
#           once, one thread each, against one thread pair for s-one);
#   s-split two of ours --mode http -N N/2 each, no Redis, loaded as s-pair: the static split
#           that a perfect sharing would match, so the cost of the split itself (two processes,
#           two load generators) is told apart from the cost of sharing.
# The Redis server is our own, on a free port, without persistence (--save '').

SHARED_TARGETS=(s-one s-split s-pair)

shared_workloads() {
    local w
    for w in "ka-c$KA_CONNS" new-c16; do
        wanted "$w" && echo "$w"
    done
}

start_redis() {
    local port
    port=$(free_port)
    start_group "$OUT/redis.log" redis-server --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly no --daemonize no
    wait_port "$port" "$STARTED"
    REDIS_PORT=$port
}

# wait_leased: until both instances hold a lease (/status: shared.state "leased"). A group new
# to Redis starts "recovering" (Redis cannot tell new from lost) and is granted nothing for a
# lease + grace (13 s by default).
wait_leased() {
    local p deadline=$((SECONDS + 60))
    for p in "${SHARED_ADMIN[@]}"; do
        until curl -s --max-time 2 "http://127.0.0.1:$p/status" | grep -Eq '"state": *"leased"'; do
            ((SECONDS < deadline)) || die "the shared pair holds no lease after 60 s (see $OUT/s-pair-*.log)"
            sleep 0.5
        done
    done
}

shared_section() {
    local from=${#GROUPS_STARTED[@]} wls i admin p
    wls=$(echo $(shared_workloads))
    [[ -n $wls ]] || return 0
    log "shared section: one instance with -N $LIMIT against two sharing -N $LIMIT through Redis"
    start_http_backends
    start_redis
    start_ours s-one s-one --mode http -N "$LIMIT" -R 1000000
    SHARED_ADMIN=()
    for i in 1 2; do
        admin=$(free_port)
        start_ours s-pair "s-pair-$i" --mode http -N "$LIMIT" -R 1000000 --admin "$admin" \
            --shared-limit "redis://127.0.0.1:$REDIS_PORT" --shared-name "bench-$$"
        SHARED_ADMIN+=("$admin")
    done
    for i in 1 2; do
        start_ours s-split "s-split-$i" --mode http -N $(((LIMIT + 2 - i) / 2)) -R 1000000
    done
    LBPID[s-pair]="" LBPID[s-split]="" # two processes: no thread split
    REDIS[s-pair]=$REDIS_PORT
    wait_leased
    for i in "${SHARED_TARGETS[@]}"; do sanity_http "$i"; done
    # Long enough for both leases to settle on their shares (two renewal intervals).
    run_wrk "${PORT[s-pair]}" 16 0 3
    warm_up s-one s-split
    run_cells "$wls" "${SHARED_TARGETS[@]}"
    for i in 0 1; do
        p=${SHARED_ADMIN[i]}
        curl -s --max-time 5 "http://127.0.0.1:$p/status" >"$OUT/s-pair-$((i + 1)).status.json" || true
    done
    redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' | grep '^cmdstat_' >"$OUT/redis-commandstats.txt" || true
    stop_from "$from"
}

shared_report() {
    local w wls
    wls=$(echo $(shared_workloads))
    [[ -n $wls ]] || return 0
    echo "### one limit shared by two instances (Redis)"
    echo
    echo "Medians of $REPS run(s), ${DURATION} s per wrk run; both: --mode http -N $LIMIT -R 1000000${LB_EXTRA:+ $LB_EXTRA};"
    echo "the pair shares N = $LIMIT through --shared-limit (lease 3 s), half of the clients on each."
    echo
    echo "| workload | one instance (req/s) | two, static N/2 each | two sharing N (req/s, both) | sharing / one | sharing / static | Redis calls/s (commands/s) | cpu/req one | cpu/req sharing (both) | served: one / static / sharing |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for w in $wls; do
        printf '| %s | %s | %s | %s | %s | %s | %s (%s) | %s | %s | %s |\n' "$w" "$(int "$(median "$w" s-one 4)")" \
            "$(int "$(median "$w" s-split 4)")" "$(int "$(median "$w" s-pair 4)")" \
            "$(paired_ratio "$w" s-pair s-one)" "$(paired_ratio "$w" s-pair s-split)" \
            "$(int "$(median "$w" s-pair 14)")" "$(int "$(median "$w" s-pair 15)")" \
            "$(us "$(median "$w" s-one 7)")" "$(us "$(median "$w" s-pair 7)")" \
            "$([[ $w == ka-* ]] && echo "$(median "$w" s-one 9) / $(median "$w" s-split 9) / $(median "$w" s-pair 9)" || echo -)"
    done
    echo
    echo "Redis calls: the lease scripts run (EVALSHA/EVAL, one round trip each); commands: every"
    echo "command Redis ran, the scripts' own included (INFO stats total_commands_processed)."
    echo
    echo "Errors over all runs: $(for w in $wls; do echo -n "$w: $(errors_of "$w" "${SHARED_TARGETS[@]}"); "; done)"
    others_note '^s-'
    echo
}

shared_verdict() {
    local w wls r
    wls=$(echo $(shared_workloads))
    [[ -n $wls ]] || return 0
    echo "shared-limit target (issue 14): two instances sharing N at >= 0.9x one instance:"
    for w in $wls; do
        r=$(paired_ratio "$w" s-pair s-one)
        echo "  $w: ${r}x (static split $(paired_ratio "$w" s-split s-one)x), Redis $(int "$(median "$w" s-pair 14)") calls/s: $(awk -v r="$r" 'BEGIN { print (r != "-" && r + 0 >= 0.9) ? "met" : "NOT met" }')"
    done
}
