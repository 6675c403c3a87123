#!/usr/bin/env bash
# `make run`: the fleet from examples/fleet.yaml, in http mode: three spawned backends
# (worker-1..3 on 9001-9003, ~20 ms per request, 5% failures), a pool of two listeners (8020,
# 8021) sharing 8 slots (one per request), the dashboard on 9000, durable stats in
# examples/fleet-stats.db. Ctrl-C (or SIGTERM) stops the balancer, which stops its backends.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
URL=http://127.0.0.1:8020/api/v1/hello

cat <<TXT
Starting the fleet from examples/fleet.yaml (mode: http). Try, in another shell:

  curl -i $URL         # through listener 1
  curl -i http://127.0.0.1:8021/api/v1/hello         # through listener 2 (same limits)
  curl -sv $URL $URL 2>&1 | grep -i -e re-using -e '^< Server-Name'
                                                     # two requests on one connection (curl
                                                     # reuses it): each gets its own slot
  for i in \$(seq 50); do curl -s -o /dev/null $URL & done; wait
  curl -s http://127.0.0.1:9000/status                # live state (JSON)
  curl -s http://127.0.0.1:9000/metrics               # Prometheus
  curl -s http://127.0.0.1:9000/worker/stats          # the fleet's stats shape
  curl -X PUT --data 20 http://127.0.0.1:9000/rate    # pace to 20 requests/s
  $BIN/loadbalancer stats examples/fleet-stats.db

Dashboard: http://127.0.0.1:9000/

Ctrl-C stops the balancer and its backends.
TXT
exec "$BIN/loadbalancer" --config examples/fleet.yaml
