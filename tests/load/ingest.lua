-- ingest.lua — the wrk script of scripts/load-test.sh: POSTs NDJSON batches of valid records to
-- the producer's POST /v1/logs and reports, from done(), what the producer answered.
--
--   LOADTEST_TOKEN=<token> wrk -s tests/load/ingest.lua URL/v1/logs -- RECORDS.ndjson BATCH
--
-- RECORDS.ndjson holds one valid record per line (scripts/load-test.sh makes it from logs.json);
-- each request carries BATCH of them, cycling through the file. The bearer token comes from the
-- environment, so it never shows in the process list. done() prints one line:
--   LOADTEST duration_us=… answered=… accepted=… rejected=… non2xx=… socket_errors=… statuses=…
-- accepted/rejected are the sums of the producer's JSON answers of 2xx responses; non2xx counts
-- the other responses; socket_errors are wrk's connect, read, write and timeout errors.

local threads = {}

function setup(thread)
  thread:set("thread_number", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, batch = args[1], tonumber(args[2] or "100")
  if not path or not batch or batch < 1 then
    error("usage: wrk -s ingest.lua URL -- RECORDS.ndjson BATCH")
  end
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then lines[#lines + 1] = line end
  end
  if #lines == 0 then error("no records in " .. path) end
  local headers = { ["Content-Type"] = "application/x-ndjson" }
  local token = os.getenv("LOADTEST_TOKEN")
  if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
  bodies = {}
  local batches = math.max(1, math.floor(#lines / batch))
  for b = 0, batches - 1 do
    local parts = {}
    for i = 1, batch do parts[i] = lines[((b * batch + i - 1) % #lines) + 1] end
    bodies[#bodies + 1] = wrk.format("POST", wrk.path, headers, table.concat(parts, "\n") .. "\n")
  end
  -- Threads start at different batches.
  next_body = (thread_number or 0) % #bodies
  accepted, rejected, non2xx, answered = 0, 0, 0, 0
  statuses = {}
end

function request()
  next_body = next_body % #bodies + 1
  return bodies[next_body]
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 200 and status < 300 then
    accepted = accepted + (tonumber(string.match(body, '"accepted":(%d+)')) or 0)
    rejected = rejected + (tonumber(string.match(body, '"rejected":(%d+)')) or 0)
  else
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local t = { accepted = 0, rejected = 0, non2xx = 0, answered = 0 }
  local by_status = {}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (thread:get(k) or 0) end
    for status, n in pairs(thread:get("statuses") or {}) do
      by_status[status] = (by_status[status] or 0) + n
    end
  end
  local listed = {}
  for status, n in pairs(by_status) do listed[#listed + 1] = status .. ":" .. n end
  table.sort(listed)
  local e = summary.errors
  io.write(string.format(
    "LOADTEST duration_us=%d answered=%d accepted=%d rejected=%d non2xx=%d socket_errors=%d " ..
      "p50_ms=%.1f p99_ms=%.1f statuses=%s\n",
    summary.duration, t.answered, t.accepted, t.rejected, t.non2xx,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    #listed > 0 and table.concat(listed, ",") or "none"))
end
