#!/usr/bin/env bash
# http mode, driven by curl: two requests on one connection, a 100 MB upload with
# Expect: 100-continue and its download, HEAD, a bad request's exact 400, and reuse of the
# server connection, seen in the balancer's /status and the backend's own count.
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

mkdir -p "$WORK/files"
start a "$BIN/backend" --dir "$WORK/files" 0
A=$PORT_a
start lb "$BIN/loadbalancer" --mode http -N 2 -R 1000000 --admin 0 -v 0 "$A"
LB=$PORT_lb
ADMIN=$(sed -nE 's/.*admin on http:\/\/[^:]*:([0-9]+).*/\1/p' "$WORK/lb.log" | head -1)

# curl reuses its connection for the second URL; the balancer keeps it open between them.
out=$(curl -s -m 10 -v "http://127.0.0.1:$LB/api/v1/hello" "http://127.0.0.1:$LB/api/v1/hello" 2>&1)
check "two requests on one client connection" "1" "$(grep -c 'Re-using existing\|Reusing existing' <<<"$out")"
check "both answered 200" "2" "$(grep -c '^< HTTP/1.1 200' <<<"$out")"

direct=$(curl -s -m 10 -I "http://127.0.0.1:$A/api/v1/hello" | tr -d '\r' | grep -v '^$' | md5sum)
via=$(curl -s -m 10 -I "http://127.0.0.1:$LB/api/v1/hello" | tr -d '\r' | grep -v '^$' | md5sum)
check "HEAD gets the backend's answer, unchanged" "$direct" "$via"
out=$(curl -s -m 10 -v -I "http://127.0.0.1:$LB/api/v1/hello" "http://127.0.0.1:$LB/api/v1/hello" 2>&1)
check "a GET after a HEAD on the same connection" "1" "$(grep -c 'Re-using existing\|Reusing existing' <<<"$out")"

head -c $((100 * 1024 * 1024)) /dev/urandom > "$WORK/big.in"
code=$(curl -s -m 120 -o /dev/null -w '%{http_code}' -T "$WORK/big.in" "http://127.0.0.1:$LB/big.bin")
check "100 MB PUT with Expect: 100-continue" "201" "$code"
curl -s -m 120 -o "$WORK/big.out" "http://127.0.0.1:$LB/big.bin"
if cmp -s "$WORK/big.in" "$WORK/big.out"; then pass "100 MB GET intact"; else fail "100 MB GET differs"; fi

got=$(printf 'GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n' | curl -s -m 10 telnet://127.0.0.1:$LB | od -An -c | tr -s ' ')
want=$(printf 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' | od -An -c | tr -s ' ')
check "differing Content-Lengths get the exact 400" "$want" "$got"

served=$(curl -s -m 10 "http://127.0.0.1:$ADMIN/status" | sed -nE 's/.*"served":([0-9]+).*/\1/p')
# 2 GETs, 1 HEAD, 1 HEAD + 1 GET, the PUT and the GET of the big file; the 400 never queued.
check "served counts requests" "7" "$served"
reused=$(grep -c 'reused connection' "$WORK/lb.log" || true)
if [ "$reused" -ge 3 ]; then pass "server connections reused ($reused times)"; else fail "reused only $reused times"; fi

finish
