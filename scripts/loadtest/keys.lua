-- wrk script: POST a small JSON body, each request with the next key of
-- the file named by KEYS_FILE (one key a line), round robin per thread.
local keys = {}
local i = 0

local function load()
  local path = os.getenv("KEYS_FILE")
  if path == nil then return end
  for line in io.lines(path) do
    keys[#keys + 1] = line
  end
end

init = function(args)
  load()
  i = math.random(#keys > 0 and #keys or 1)
end

request = function()
  local headers = { ["Content-Type"] = "application/json" }
  if #keys > 0 then
    i = (i % #keys) + 1
    headers["X-API-Key"] = keys[i]
  end
  return wrk.format("POST", nil, headers, '{"title":"STARBUCKS 1234","country":"US","type":"expense"}')
end
