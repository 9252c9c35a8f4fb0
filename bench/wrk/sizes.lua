-- Random output sizes per request, so no result cache can answer.
-- BENCH_PATH is a path with {w} and {h} placeholders (none for a fixed path).
-- BENCH_METHOD, BENCH_BODY and BENCH_AUTH (a bearer key), when set, make it a JSON request
-- of that method with that body and key (the JSON API); otherwise every request is a GET.
-- At the end, one JSON line with the counts and latency percentiles.

local template = os.getenv("BENCH_PATH") or "/"
local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
local auth = os.getenv("BENCH_AUTH")
local headers = {}
if body then headers["Content-Type"] = "application/json" end
if auth then headers["Authorization"] = "Bearer " .. auth end
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0) * 7919)
end

request = function()
  local w = math.random(200, 800)
  local h = math.random(150, 600)
  local path = template:gsub("{w}", tostring(w)):gsub("{h}", tostring(h))
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors.status, errors.connect,
    errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
