#!/usr/bin/env bash
# `make install` into a staging DESTDIR: the four binaries and the systemd unit land where the
# Makefile says, the unit names the installed binary and keeps its reload and stop settings,
# and systemd-analyze (where present) accepts it. Uses the binaries `make test` just built
# (`-o build`: no release rebuild without the test feature).
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

install_to() { # install_to DESTDIR [MAKE VARS...]
  local dest=$1; shift
  make -s -C "$ROOT" -o build install DESTDIR="$dest" "$@" >"$WORK/make.log" 2>&1 \
    || { cat "$WORK/make.log" >&2; return 1; }
}

for prefix in /usr/local /usr; do
  dest=$WORK/stage${prefix//\//-}
  install_to "$dest" PREFIX="$prefix"
  for b in loadbalancer backend eventrelay eventsim; do
    if [ -x "$dest$prefix/bin/$b" ]; then pass "PREFIX=$prefix: bin/$b installed"; else fail "PREFIX=$prefix: no bin/$b"; fi
  done
  unit=$dest$prefix/lib/systemd/system/loadbalancer.service
  if [ -f "$unit" ]; then pass "PREFIX=$prefix: unit installed"; else fail "PREFIX=$prefix: no unit at $unit"; continue; fi
  check "PREFIX=$prefix: ExecStart names the installed binary" "$prefix/bin/loadbalancer" \
    "$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")"
  check "PREFIX=$prefix: ExecReload sends SIGHUP" 'kill -HUP $MAINPID' "$(sed -n 's/^ExecReload=//p' "$unit")"
  check "PREFIX=$prefix: KillSignal is SIGTERM" SIGTERM "$(sed -n 's/^KillSignal=//p' "$unit")"
done

# The stop timeout must outlast the drain (--drain-timeout's default, from --help) plus the 2 s
# the balancer gives its spawned backends.
unit=$WORK/stage-usr-local/usr/local/lib/systemd/system/loadbalancer.service
drain=$("$BIN/loadbalancer" --help | grep -A1 -e '--drain-timeout' | tr '\n' ' ' \
  | sed -n 's/.*--drain-timeout.*default \([0-9]*\)s.*/\1/p')
stop=$(sed -n 's/^TimeoutStopSec=//p' "$unit")
if [[ $drain =~ ^[0-9]+$ && $stop =~ ^[0-9]+$ ]] && [ "$stop" -gt $((drain + 2)) ]; then
  pass "TimeoutStopSec $stop > drain $drain s + 2 s"
else
  fail "TimeoutStopSec [$stop] must be above --drain-timeout's default [$drain] + 2"
fi

# systemd-analyze checks that ExecStart's binary exists, so install without DESTDIR under a
# PREFIX inside the temp dir: the unit then names a binary that is really there.
if command -v systemd-analyze >/dev/null; then
  install_to "" PREFIX="$WORK/prefix"
  if out=$(systemd-analyze verify "$WORK/prefix/lib/systemd/system/loadbalancer.service" 2>&1); then
    pass "systemd-analyze verify accepts the unit"
  else
    fail "systemd-analyze verify: $out"
  fi
fi

finish
