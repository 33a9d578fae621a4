-- Shared by every wrk run: print one machine-readable line that run.sh parses.
-- Latencies are in microseconds; non2xx counts responses >= 400 (wrk's
-- "status" errors) — run.sh refuses a run that has any (a 401 is cheap and
-- would inflate the RPS).
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99),
      e.status, e.connect, e.read, e.write, e.timeout))
end
