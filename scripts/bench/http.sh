# The http section of scripts/bench.sh (sourced by it): request-level proxies in front of two of
# our `backend` servers, which keep connections alive, all bounded to N = LIMIT requests at the
# servers except nginx (the unbounded reference):
#   h-direct      wrk straight to backend 1 (the ceiling of one server);
#   h-ours-r5     ours --mode http -N N -R 5 (a probe round every 5 requests: 2 more requests
#                 per 5 to the same two servers, on the same cores);
#   h-ours-r1m    ours --mode http -N N -R 1000000 (probes on the 5 s timer: HAProxy's work);
#   h-haproxy-t1  HAProxy mode http, nbthread 1 } the better of the two is reported, per row
#   h-haproxy-t2  HAProxy mode http, nbthread 2 }
#   h-nginx       nginx http, least_conn, upstream keepalive 64, 2 workers, no bound.

HTTP_TARGETS=(h-direct h-ours-r5 h-ours-r1m h-haproxy-t1 h-haproxy-t2 h-nginx)

http_workloads() {
    local c w
    for w in $(for c in $CONNS; do echo "new-c$c"; done) "ka-c$KA_CONNS" "idle-ka-c$KA_CONNS"; do
        [[ $w != idle-* ]] || ((IDLE > 0)) || continue
        wanted "$w" && echo "$w"
    done
}

# HAProxy as a request-level peer: the bound is on requests at the servers (server maxconn,
# summing to N; the rest wait in HAProxy's queue), client connections are kept alive and idle
# ones hold nothing, server connections are reused (http-reuse safe). Client-side maxconn is
# only a safety net, sized for the idle row. `no strict-limits`: maxconn asks for about two
# descriptors per connection, more than this machine's hard limit may allow, and HAProxy
# otherwise refuses to start; it needs only one per idle client.
haproxy_http_conf() {
    local port=$1 threads=$2 b1=$3 b2=$4 m1=$(((LIMIT + 1) / 2)) m2=$((LIMIT / 2))
    local conns=$((IDLE + 1024))
    cat <<EOF
global
  maxconn $conns
  nbthread $threads
  no strict-limits
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout queue 60s
  timeout http-request 30s
  timeout http-keep-alive 60s
frontend fe
  bind 127.0.0.1:$port
  backlog 4096
  maxconn $conns
  default_backend bk
backend bk
  balance leastconn
  http-reuse safe
  option httpchk GET /healthcheck
  http-check expect status 200
  server b1 127.0.0.1:$b1 maxconn $m1 check inter 5s
  server b2 127.0.0.1:$b2 maxconn $m2 check inter 5s
EOF
}

# nginx as an http proxy: the reference, unbounded (every request goes straight on), with
# upstream keep-alive as the lab configures it.
nginx_http_conf() {
    local port=$1 b1=$2 b2=$3 conns=$((IDLE + 2048))
    ((conns < FD_LIMIT - 64)) || conns=$((FD_LIMIT - 64))
    cat <<EOF
worker_processes 2;
daemon off;
master_process on;
pid $WORK/nginx-http.pid;
error_log $WORK/nginx-http.error.log warn;
worker_rlimit_nofile $FD_LIMIT;
events { worker_connections $conns; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp/body;
  proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fastcgi;
  uwsgi_temp_path $WORK/tmp/uwsgi;
  scgi_temp_path $WORK/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  tcp_nodelay on;
  upstream bk {
    least_conn;
    server 127.0.0.1:$b1;
    server 127.0.0.1:$b2;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / {
      proxy_pass http://bk;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffer_size 16k;
      proxy_buffers 8 16k;
      proxy_max_temp_file_size 0;
    }
  }
}
EOF
}

# sanity_http NAME: through each port of the target, /healthcheck answers 200, and two
# requests for /small on one connection both come back whole.
sanity_http() {
    local name=$1 port got
    for port in ${PORT[$name]}; do
        got=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthcheck") || true
        [[ $got == 200 ]] || die "$name: /healthcheck on $port gave '$got'"
        got=$(curl -s --max-time 5 -o /dev/null -o /dev/null -w '%{http_code} %{size_download} %{num_connects}\n' \
            "http://127.0.0.1:$port/small" "http://127.0.0.1:$port/small" | tr '\n' ' ') || true
        [[ $got == "200 $SMALL_BYTES 1 200 $SMALL_BYTES 0 " ]] ||
            die "$name: two keep-alive requests for /small on $port gave '$got'"
    done
}

# start_http_backends: two servers on the section's files; SERVERS their ports. By default our
# `backend` (a thread per connection: enough for 64 direct keep-alive clients and nginx's
# upstream ones); with --http-backend nginx, the tcp section's nginx servers instead.
start_http_backends() {
    local i port ports=()
    for i in 1 2; do
        port=$(free_port)
        if [[ $HTTP_BACKEND == nginx ]]; then
            nginx_backend_conf "hb$i" "$port" >"$WORK/hb$i.conf"
            start_group "$OUT/hb$i.log" nginx -p "$WORK" -e "$WORK/hb$i.error.log" -c "$WORK/hb$i.conf"
        else
            start_group "$OUT/hb$i.log" "$BACKEND" --dir "$WORK/www" --threads "$BACKEND_THREADS" \
                --name "hb$i" -q "$port"
        fi
        wait_port "$port" "$STARTED"
        ports+=("$port")
    done
    SERVERS="${ports[*]}"
}

http_section() {
    local from=${#GROUPS_STARTED[@]} wls port t b=()
    wls=$(echo $(http_workloads))
    [[ -n $wls ]] || return 0
    log "http section ($HTTP_BACKEND servers): ours --mode http, HAProxy mode http, nginx http; N = $LIMIT"
    start_http_backends
    read -r -a b <<<"$SERVERS"
    PORT[h-direct]=${b[0]} CPUG[h-direct]="" IDLE_OK[h-direct]=0
    start_ours h-ours-r5 h-ours-r5 --mode http -N "$LIMIT" -R 5
    start_ours h-ours-r1m h-ours-r1m --mode http -N "$LIMIT" -R 1000000
    for t in 1 2; do
        port=$(free_port)
        haproxy_http_conf "$port" "$t" "${b[@]}" >"$WORK/h-haproxy-t$t.cfg"
        start_group "$OUT/h-haproxy-t$t.log" haproxy -db -f "$WORK/h-haproxy-t$t.cfg"
        wait_port "$port" "$STARTED"
        PORT[h-haproxy-t$t]=$port CPUG[h-haproxy-t$t]=$STARTED IDLE_OK[h-haproxy-t$t]=1
    done
    port=$(free_port)
    nginx_http_conf "$port" "${b[@]}" >"$WORK/nginx-http.conf"
    start_group "$OUT/h-nginx.log" nginx -p "$WORK" -e "$WORK/nginx-http.error.log" -c "$WORK/nginx-http.conf"
    wait_port "$port" "$STARTED"
    PORT[h-nginx]=$port CPUG[h-nginx]=$STARTED IDLE_OK[h-nginx]=1
    for t in "${HTTP_TARGETS[@]}"; do sanity_http "$t"; done
    warm_up "${HTTP_TARGETS[@]}"
    run_cells "$wls" "${HTTP_TARGETS[@]}"
    stop_from "$from"
}

# best_haproxy WORKLOAD: h-haproxy-t1 or -t2, whichever has the higher median rate.
best_haproxy() {
    awk -v a="$(median "$1" h-haproxy-t1 4)" -v b="$(median "$1" h-haproxy-t2 4)" \
        'BEGIN { print (b + 0 > a + 0) ? "h-haproxy-t2" : "h-haproxy-t1" }'
}

# dash VALUE: VALUE, or "-" if it is empty.
dash() { printf '%s' "${1:--}"; }

# us VALUE: "123 us", or "-".
us() { awk -v a="$1" 'BEGIN { if (a == "") printf "-"; else printf "%.0f us", a }'; }

http_report() {
    local w wls hb hc d r5 r1 h n
    wls=$(echo $(http_workloads))
    [[ -n $wls ]] || return 0
    echo "### http mode ($([[ $HTTP_BACKEND == nginx ]] && echo "nginx backends" || echo "our backend servers"), keep-alive)"
    echo
    echo "Medians of $REPS run(s), ${DURATION} s per wrk run; N = $LIMIT. ours: --mode http -N $LIMIT, -R 5 and -R 1000000${LB_EXTRA:+, $LB_EXTRA};"
    echo "HAProxy: mode http, server maxconn $(((LIMIT + 1) / 2)) + $((LIMIT / 2)), http-reuse safe, check inter 5s, the better of nbthread 1 and 2 (named);"
    echo "nginx: http, upstream keepalive 64, unbounded (a reference, not a peer at equal bound)."
    echo "idle-ka-c$KA_CONNS: ka-c$KA_CONNS with $IDLE more keep-alive connections open and idle against the proxy."
    echo
    echo "| workload (req/s) | direct | ours -R 5 | ours -R 1000000 | HAProxy | nginx | ours -R 5 / HAProxy | ours -R 1000000 / HAProxy |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for w in $wls; do
        hb=$(best_haproxy "$w")
        d=$(int "$(median "$w" h-direct 4)")
        [[ $w != idle-* ]] || d="-"
        printf '| %s | %s | %s | %s | %s (t%s) | %s | %s | %s |\n' "$w" "$d" \
            "$(int "$(median "$w" h-ours-r5 4)")" "$(int "$(median "$w" h-ours-r1m 4)")" \
            "$(int "$(median "$w" "$hb" 4)")" "${hb##*-t}" "$(int "$(median "$w" h-nginx 4)")" \
            "$(paired_ratio "$w" h-ours-r5 "$hb")" "$(paired_ratio "$w" h-ours-r1m "$hb")"
    done
    echo
    echo "Proxy CPU time per request (user + system, all threads of the proxy's processes):"
    echo
    echo "| workload | ours -R 5 | ours -R 1000000 | HAProxy | nginx | ours -R 1000000 / HAProxy |"
    echo "|---|---:|---:|---:|---:|---:|"
    for w in $wls; do
        hb=$(best_haproxy "$w")
        r1=$(median "$w" h-ours-r1m 7)
        hc=$(median "$w" "$hb" 7)
        printf '| %s | %s | %s | %s (t%s) | %s | %s |\n' "$w" "$(us "$(median "$w" h-ours-r5 7)")" \
            "$(us "$r1")" "$(us "$hc")" "${hb##*-t}" "$(us "$(median "$w" h-nginx 7)")" \
            "$(awk -v a="$r1" -v b="$hc" 'BEGIN { if (a == "" || b + 0 == 0) printf "-"; else printf "%.2f", a / b }')"
    done
    echo
    echo "Keep-alive: connections served of $KA_CONNS (req/s x mean latency), the latency p99 (median over"
    echo "the runs), and for the idle row the idle connections still open when the run ended:"
    echo
    echo "| target | ka-c$KA_CONNS served | ka-c$KA_CONNS p99 | idle-ka-c$KA_CONNS served | idle-ka-c$KA_CONNS p99 | idle still open | idle / no idle (req/s) |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for h in h-direct h-ours-r5 h-ours-r1m h-haproxy-t1 h-haproxy-t2 h-nginx; do
        n=$(median "idle-ka-c$KA_CONNS" "$h" 14)
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$h" \
            "$(dash "$(median "ka-c$KA_CONNS" "$h" 9)")" "$(ms "$(median "ka-c$KA_CONNS" "$h" 12)")" \
            "$(dash "$(median "idle-ka-c$KA_CONNS" "$h" 9)")" "$(ms "$(median "idle-ka-c$KA_CONNS" "$h" 12)")" \
            "$(dash "${n:+$(int "$n") of $IDLE}")" \
            "$(paired_ratio "idle-ka-c$KA_CONNS" "$h" "$h" "ka-c$KA_CONNS")"
    done
    echo
    echo "Errors over all runs: $(for w in $wls; do echo -n "$w: $(errors_of "$w" "${HTTP_TARGETS[@]}"); "; done)"
    others_note '^h-'
    echo
}

http_verdict() {
    local w wls hb r5 r1 v ka=ka-c$KA_CONNS idle=idle-ka-c$KA_CONNS b c
    wls=$(echo $(http_workloads))
    [[ -n $wls ]] || return 0
    met() { awk -v r="$1" -v t="$2" 'BEGIN { print (r != "-" && r + 0 >= t) ? "met" : "NOT met" }'; }
    echo "http-mode targets (issue 12), ours -R 1000000 (the same work as HAProxy's checks; -R 5 in brackets):"
    for w in $wls; do
        [[ $w == new-* ]] || continue
        hb=$(best_haproxy "$w")
        r1=$(paired_ratio "$w" h-ours-r1m "$hb")
        r5=$(paired_ratio "$w" h-ours-r5 "$hb")
        echo "  $w: ${r1}x HAProxy (${r5}x), target 1.3x: $(met "$r1" 1.3) ($(met "$r5" 1.3))"
    done
    if [[ " $wls " == *" $ka "* ]]; then
        hb=$(best_haproxy "$ka")
        r1=$(paired_ratio "$ka" h-ours-r1m "$hb")
        r5=$(paired_ratio "$ka" h-ours-r5 "$hb")
        b=$(median "$ka" h-ours-r1m 9)
        v=$(awk -v r="$r1" -v b="$b" 'BEGIN { print (r + 0 >= 1.0 && b + 0 >= 60) ? "met" : "NOT met" }')
        echo "  $ka: ${r1}x HAProxy (${r5}x), $b of $KA_CONNS served ($(median "$ka" h-ours-r5 9)); target 1.0x with >= 60 served: $v"
    fi
    if [[ " $wls " == *" $idle "* && " $wls " == *" $ka "* ]]; then
        r1=$(paired_ratio "$idle" h-ours-r1m h-ours-r1m "$ka")
        r5=$(paired_ratio "$idle" h-ours-r5 h-ours-r5 "$ka")
        hb=$(best_haproxy "$idle")
        b=$(median "$idle" h-ours-r1m 9)
        v=$(awk -v r="$r1" -v b="$b" 'BEGIN { print (r + 0 >= 0.9 && b + 0 >= 60) ? "met" : "NOT met" }')
        echo "  $idle: ${r1}x our own ka-c$KA_CONNS rate (${r5}x), $b served; $(paired_ratio "$idle" h-ours-r1m "$hb")x HAProxy with the same idle load; target >= 0.9x: $v"
    fi
    for w in $wls; do
        hb=$(best_haproxy "$w")
        c=$(awk -v a="$(median "$w" h-ours-r1m 7)" -v b="$(median "$w" "$hb" 7)" \
            'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "-" }')
        echo "  $w cpu/request: ours $(us "$(median "$w" h-ours-r1m 7)") ($(us "$(median "$w" h-ours-r5 7)")) vs HAProxy $(us "$(median "$w" "$hb" 7)") (${c}x), target <= 1.0x: $(awk -v r="$c" 'BEGIN { print (r != "-" && r + 0 <= 1.0) ? "met" : "NOT met" }')"
    done
}
