#!/usr/bin/env python3
"""Client groups and sampler for scripts/fairness.sh (a benchmark, not a test).

Each group is a set of client loops that bind one source address (127.0.0.2, ...) and fetch a
file through the balancer again and again, one request per connection, so the group stays
backlogged while it runs. A group may join late and leave early (SRC=W:K@START-STOP), which
shows how the slots are shared again when the set of waiting classes changes.

Every --interval seconds (deadline-driven) it samples, on one clock:
  - per group, the replies it has completed (client side);
  - the balancer's admin GET /status: in_flight, queued and, when the build reports them,
    per-class in_flight / queued / served (`classes`);
  - each server's GET /inflight (current, max).
It writes one CSV row per sample and, at the end, prints a summary per phase (a span in which
the same groups run): throughput and share of completions per group against the share its
weight asks for, the mean slot share from /status when available, and the servers' maximum
in-flight count.
"""

import argparse
import csv
import json
import socket
import sys
import threading
import time
import urllib.request

SETTLE_S = 1.5  # skip this long after a group joins or leaves before judging a phase
SHARE_WINDOW_S = 1.0  # completion rates over time: a window this wide, centred on the sample


class Group:
    """One client class: SRC=W:K[@START-STOP] (weight W, K loops, active from START to STOP)."""

    def __init__(self, spec, duration):
        head, _, span = spec.partition("@")
        src_w, _, k = head.partition(":")
        self.src, _, w = src_w.partition("=")
        self.weight = int(w)
        self.clients = int(k or 8)
        if span:
            a, _, b = span.partition("-")
            self.start, self.stop = float(a), float(b)
        else:
            self.start, self.stop = 0.0, float(duration)
        self.done = 0  # completed 200 replies, only changed under `lock`
        self.errors = 0  # anything else (refused, 503, short reply), only under `lock`
        self.lock = threading.Lock()

    def active(self, t):
        return self.start <= t < self.stop


def fetch(src, port, path, timeout):
    """One request on a new connection from src. True on a complete 200 reply."""
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    s = socket.socket()
    try:
        s.settimeout(timeout)
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(req)
        data = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    except OSError:
        return False
    finally:
        s.close()


def client_loop(g, args, t0, stop):
    """Backlogged client: request after request while the group is active."""
    while not stop.is_set():
        t = time.monotonic() - t0
        if t < g.start:
            stop.wait(g.start - t)
            continue
        if t >= g.stop:
            return
        ok = fetch(g.src, args.lb, args.path, args.timeout)
        with g.lock:
            if ok:
                g.done += 1
            else:
                g.errors += 1
        if not ok:
            stop.wait(0.1)  # do not spin on a failing balancer


def get_json(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def class_of(status, src):
    """The /status class whose key is src (with or without a prefix length), or None."""
    for c in (status or {}).get("classes") or []:
        if str(c.get("key", "")).split("/")[0] == src:
            return c
    return None


def sample(t, groups, args):
    status = get_json(args.admin, "/status")
    servers = [get_json(p, "/inflight") or {} for p in args.servers]
    row = {"t": round(t, 3)}
    for i, g in enumerate(groups, 1):
        with g.lock:
            row[f"g{i}_done"] = g.done
            row[f"g{i}_errors"] = g.errors
        c = class_of(status, g.src)
        for key in ("in_flight", "queued", "served"):
            row[f"g{i}_{key}"] = "" if c is None else c.get(key, "")
    row["lb_in_flight"] = "" if status is None else status.get("in_flight", "")
    row["lb_queued"] = "" if status is None else status.get("queued", "")
    for j, s in enumerate(servers, 1):
        row[f"s{j}_current"] = s.get("current", "")
        row[f"s{j}_max"] = s.get("max", "")
    row["servers_current"] = sum(int(s.get("current", 0)) for s in servers)
    return row


def add_rates_and_shares(rows, groups, service_s):
    """Per group: req/s and share of completions over a centred window, slots estimated
    from them (Little's law: a request holds its slot for about the servers' delay), and the
    slot share from /status when it reports classes."""
    half = SHARE_WINDOW_S / 2 + 0.1  # samples are due every interval, give or take a few ms
    for k, row in enumerate(rows):
        j, m = k, k
        while j > 0 and row["t"] - rows[j - 1]["t"] <= half:
            j -= 1
        while m + 1 < len(rows) and rows[m + 1]["t"] - row["t"] <= half:
            m += 1
        span = rows[m]["t"] - rows[j]["t"]
        rates = []
        for i in range(1, len(groups) + 1):
            rate = (rows[m][f"g{i}_done"] - rows[j][f"g{i}_done"]) / span if span > 0 else 0.0
            row[f"g{i}_rate"] = round(rate, 2)
            row[f"g{i}_slots_est"] = round(rate * service_s, 2)
            rates.append(rate)
        total = sum(rates)
        flights = [row[f"g{i}_in_flight"] for i in range(1, len(groups) + 1)]
        have_slots = all(f != "" for f in flights) and sum(int(f) for f in flights) > 0
        for i, rate in enumerate(rates, 1):
            row[f"g{i}_share"] = round(rate / total, 3) if total > 0 else ""
            row[f"g{i}_slot_share"] = (round(int(flights[i - 1]) / sum(int(f) for f in flights), 3)
                                       if have_slots else "")


def phases(groups, duration):
    cuts = sorted({0.0, float(duration)} | {g.start for g in groups} | {g.stop for g in groups})
    cuts = [c for c in cuts if 0 <= c <= duration]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b - a > SETTLE_S + 1]


def at(rows, t):
    """The last sample at or before t."""
    best = rows[0]
    for r in rows:
        if r["t"] <= t + 1e-9:
            best = r
    return best


def summary(rows, groups, args):
    out = []
    for a, b in phases(groups, args.duration):
        act = [(i, g) for i, g in enumerate(groups, 1) if g.start <= a and g.stop >= b]
        if not act:
            continue
        r0, r1 = at(rows, a + SETTLE_S), at(rows, b)
        span = r1["t"] - r0["t"]
        if span <= 0:
            continue
        wsum = sum(g.weight for _, g in act)
        thr = {i: (r1[f"g{i}_done"] - r0[f"g{i}_done"]) / span for i, _ in act}
        total = sum(thr.values())
        out.append(f"phase {a:.0f}-{b:.0f} s (judged from {r0['t']:.1f} s to {r1['t']:.1f} s):")
        for i, g in act:
            inside = [r for r in rows if r0["t"] <= r["t"] <= r1["t"]]
            slots = [r[f"g{i}_slot_share"] for r in inside if r[f"g{i}_slot_share"] != ""]
            slot_txt = f"{sum(slots) / len(slots):.2f}" if slots else "n/a"
            flights = [int(r[f"g{i}_in_flight"]) for r in inside if r[f"g{i}_in_flight"] != ""]
            flight_txt = (f"{sum(flights) / len(flights):.1f}" if flights
                          else f"~{thr[i] * args.service_ms / 1e3:.1f} (est.)")
            share = thr[i] / total if total else 0.0
            out.append(f"  {g.src:<10} weight {g.weight}  {thr[i]:6.1f} req/s  share of completions "
                       f"{share:.2f} (weight asks {g.weight / wsum:.2f})  mean slots "
                       f"{flight_txt}  slot share {slot_txt}")
    last = rows[-1]
    maxes = [last.get(f"s{j}_max", "") for j in range(1, len(args.servers) + 1)]
    peak = max(r["servers_current"] for r in rows)
    out.append(f"servers' maximum in-flight (GET /inflight max): "
               f"{', '.join(str(m) for m in maxes)}; sum of current, sampled: at most {peak}")
    errs = ", ".join(f"{g.src}: {last[f'g{i}_errors']}" for i, g in enumerate(groups, 1))
    out.append(f"failed requests: {errs}")
    if all(r[f"g{i}_in_flight"] == "" for r in rows for i in range(1, len(groups) + 1)):
        out.append("note: /status has no per-class `classes`; shares are from client-side "
                   "completions only")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lb", type=int, required=True, help="balancer port")
    ap.add_argument("--admin", type=int, required=True, help="balancer admin port")
    ap.add_argument("--servers", type=lambda s: [int(x) for x in s.split(",")], required=True)
    ap.add_argument("--group", action="append", required=True, metavar="SRC=W:K[@A-B]")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--path", default="/f")
    ap.add_argument("--timeout", type=float, default=40.0, help="per request, seconds")
    ap.add_argument("--service-ms", type=float, default=200.0,
                    help="how long a request holds its slot (the servers' --delay-ms)")
    ap.add_argument("--csv", required=True)
    args = ap.parse_args()

    groups = [Group(s, args.duration) for s in args.group]
    stop = threading.Event()
    t0 = time.monotonic()
    threads = [threading.Thread(target=client_loop, args=(g, args, t0, stop), daemon=True)
               for g in groups for _ in range(g.clients)]
    for th in threads:
        th.start()
    rows = []
    due = t0
    try:
        while True:
            rows.append(sample(time.monotonic() - t0, groups, args))
            due += args.interval
            if due - t0 > args.duration + 1e-9:
                break
            time.sleep(max(0.0, due - time.monotonic()))
    finally:
        stop.set()
    add_rates_and_shares(rows, groups, args.service_ms / 1e3)
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    print(summary(rows, groups, args))
    # Loops still inside a request end within --timeout; they are daemon threads, and the
    # shell stops the balancer next, which ends them at once.
    return 0


if __name__ == "__main__":
    sys.exit(main())
