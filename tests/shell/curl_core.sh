#!/usr/bin/env bash
# The core bridge, driven by curl: routing to the least-loaded backend, the exact 500,
# a 100 MB upload and download through `curl -T`, and bad command lines.
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

mkdir -p "$WORK/files"
start a "$BIN/backend" --entries 7 --dir "$WORK/files" 0
start b "$BIN/backend" --entries 1 --dir "$WORK/files" 0
start c "$BIN/backend" --entries 4 --dir "$WORK/files" 0
A=$PORT_a B=$PORT_b C=$PORT_c
start lb "$BIN/loadbalancer" -N 4 -R 100 0 "$A" "$B" "$C"
LB=$PORT_lb

name=$(curl -s -m 10 -D - -o /dev/null "http://127.0.0.1:$LB/api/v1/hello" | tr -d '\r' | sed -n 's/^Server-Name: //p')
check "routes to the least-loaded backend" "backend-$B" "$name"

code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LB/nope")
check "a 404 passes through unchanged" "404" "$code"

# 100 MB up with curl -T (Expect: 100-continue) and back down, byte for byte.
head -c $((100 * 1024 * 1024)) /dev/urandom > "$WORK/big.in"
code=$(curl -s -m 120 -o /dev/null -w '%{http_code}' -T "$WORK/big.in" "http://127.0.0.1:$LB/big.bin")
check "100 MB PUT through the balancer" "201" "$code"
curl -s -m 120 -o "$WORK/big.out" "http://127.0.0.1:$LB/big.bin"
if cmp -s "$WORK/big.in" "$WORK/big.out"; then pass "100 MB GET intact"; else fail "100 MB GET differs"; fi

# Every server down: the exact 500, byte for byte.
start dead "$BIN/loadbalancer" 0 1 2
DEAD=$PORT_dead
got=$(curl -s -m 10 -i "http://127.0.0.1:$DEAD/" | od -An -c | tr -s ' ')
want=$(printf 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n' | od -An -c | tr -s ' ')
check "all servers down gives the exact 500" "$want" "$got"

# Bad command lines: exit 2, one line naming the word, then the usage line.
for args in "-N 0 8080 8081" "-N abc 8080 8081" "-R -1 8080 8081" "99999 8081" "8080" "--bogus 1 2"; do
  set +e
  # shellcheck disable=SC2086
  err=$("$BIN/loadbalancer" $args 2>&1 >/dev/null); code=$?
  set -e
  check "loadbalancer $args exits 2" "2" "$code"
  check "loadbalancer $args prints error + usage" "2" "$(echo "$err" | wc -l | tr -d ' ')"
done

finish
