-- Phase (c): one distinct client IP per request. gatehouse trusts 127.0.0.0/8
-- in this phase, so the X-Forwarded-For address is the rate-limit key.
-- Addresses count up from 10.0.0.0; requests sent after the first
-- DISTINCT_IPS (in flight when the thread stops) reuse 9.255.255.255.
local distinct = tonumber(os.getenv("DISTINCT_IPS"))
local base = 10 * 16777216   -- 10.0.0.0
local sent, received = 0, 0

local function ipv4(n)
   return string.format("%d.%d.%d.%d",
      math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
      math.floor(n / 256) % 256, n % 256)
end

request = function()
   local ip
   if sent < distinct then ip = ipv4(base + sent) else ip = "9.255.255.255" end
   sent = sent + 1
   -- No route matches /limiter-flood, so gatehouse answers 404 itself
   -- (default_route: deny) — after the per-IP limiter has seen the client,
   -- which runs before routing (SPEC §3.5). No JWT check, no upstream hop:
   -- the flood of 1,000,000 requests finishes sooner.
   return wrk.format("GET", "/limiter-flood", { ["X-Forwarded-For"] = ip })
end

-- Once every distinct IP was answered, tell run.sh (which interrupts wrk:
-- wrk's main thread sleeps for the whole -d otherwise) and stop this thread.
local done_file = os.getenv("XFF_DONE_FILE")
local complained = false
response = function(status, headers, body)
   received = received + 1
   if status ~= 404 and not complained then
      io.stderr:write("UNEXPECTED status " .. status .. "\n")   -- e.g. 429: the limit triggered
      complained = true
   end
   if received == distinct then
      local f = io.open(done_file, "w")
      f:close()
      wrk.thread:stop()
   end
end

dofile(os.getenv("LOAD_DIR") .. "/report.lua")
