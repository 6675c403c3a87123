#!/usr/bin/env bash
# `make run`: the fleet from examples/fleet.yaml: three spawned backends (worker-1..3 on
# 9001-9003, ~20 ms per request, 5% failures), a pool of two listeners (8020, 8021), the
# dashboard on 9000, durable stats in examples/fleet-stats.db. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}

cat <<'TXT'
Starting the fleet from examples/fleet.yaml. Try, in another shell:

  curl -i http://127.0.0.1:8020/api/v1/hello         # through listener 1
  curl -i http://127.0.0.1:8021/api/v1/hello         # through listener 2 (same limits)
  for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8020/api/v1/hello & done; wait
  curl -s http://127.0.0.1:9000/status                # live state (JSON)
  curl -s http://127.0.0.1:9000/metrics               # Prometheus
  curl -s http://127.0.0.1:9000/worker/stats          # the fleet's stats shape
  curl -X PUT --data 20 http://127.0.0.1:9000/rate    # pace to 20 connections/s
  target/release/loadbalancer stats examples/fleet-stats.db

Dashboard: http://127.0.0.1:9000/

Ctrl-C stops the balancer and its backends.
TXT
exec "$BIN/loadbalancer" --config examples/fleet.yaml
