-- wrk script of tests/benchmarks/webhook_ingest.py: POST pre-signed Stripe events, one id each.
--
--   wrk -t2 -c50 -d10s -s webhook_ingest.lua URL -- <file prefix> <once|cycle>
--
-- Thread n reads "<file prefix><n>": records of "<Stripe-Signature>\n<length>\n<body>\n", signed
-- by the benchmark just before the run (HMAC-SHA256 is not in wrk's LuaJIT), each with its own
-- event id. "once": every body is sent once; a thread that has sent all of its own stops (the
-- benchmark writes more than the run can send, so this is only a guard). "cycle": bodies repeat
-- (for the trivial view, which ignores them). done() prints one line "BENCH_JSON {...}".

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

local bodies = {}
local signatures = {}
local next_body = 1
local cycle = false

-- Globals, read by done() through thread:get().
sent = 0
ok = 0
duplicates = 0
non2xx = 0
wrapped = 0

function init(args)
   cycle = args[2] == "cycle"
   local file = assert(io.open(args[1] .. thread_index, "rb"))
   while true do
      local signature = file:read("*l")
      if not signature then break end
      local length = tonumber(file:read("*l"))
      bodies[#bodies + 1] = file:read(length)
      signatures[#signatures + 1] = signature
      file:read(1)
   end
   file:close()
   assert(#bodies > 0, "no bodies for thread " .. thread_index)
end

function request()
   if next_body > #bodies then
      next_body = 1
      wrapped = wrapped + 1
   end
   local index = next_body
   next_body = next_body + 1
   sent = sent + 1
   return wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["Stripe-Signature"] = signatures[index],
   }, bodies[index])
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
      if string.find(body, '"duplicate": true', 1, true) then
         duplicates = duplicates + 1
      end
   else
      non2xx = non2xx + 1
   end
   if wrapped > 0 and not cycle then
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local totals = { sent = 0, ok = 0, duplicates = 0, non2xx = 0, wrapped = 0 }
   for _, thread in ipairs(threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + thread:get(name)
      end
   end
   local per_thread = {}
   for _, thread in ipairs(threads) do
      per_thread[#per_thread + 1] = tostring(thread:get("sent"))
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
         .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
         .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "sent": %d, "ok": %d, '
         .. '"duplicates": %d, "non2xx": %d, "wrapped": %d, "sent_per_thread": [%s]}\n',
      summary.requests, summary.duration, errors.connect, errors.read, errors.write,
      errors.status, errors.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean, totals.sent, totals.ok,
      totals.duplicates, totals.non2xx, totals.wrapped, table.concat(per_thread, ", ")))
end
