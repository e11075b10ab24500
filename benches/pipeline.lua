-- wrk script: send 16 pipelined requests per write (wrk -s benches/pipeline.lua).
local depth = 16

init = function(args)
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format("GET", "/echo?name=Abcde", { ["Host"] = "127.0.0.1" })
  end
  req = table.concat(r)
end

request = function()
  return req
end
