#!/usr/bin/env bash
# Makes sure the programs the tests drive are installed: curl (shell tests), promtool
# (Debian package prometheus: checks /metrics), chromium (the dashboard test), redis-server (the
# shared-limit tests start their own), gnuplot-free.
# As root on Debian it installs what is missing; otherwise it names the packages and fails.
set -euo pipefail

declare -A need=([curl]=curl [promtool]=prometheus [chromium]=chromium [redis-server]=redis-server)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing Debian packages for the tests: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
