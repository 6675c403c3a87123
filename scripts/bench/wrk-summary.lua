-- wrk reporter for scripts/bench.sh: one line at the end, fields separated by spaces, so the
-- shell can `read` it. Only done() is defined, so wrk runs no Lua per request.
--   WRK requests duration_us non2xx connect_err read_err write_err timeouts mean_us p50_us p99_us
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d %d %.0f %d %d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(99)))
end
