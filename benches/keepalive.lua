-- wrk script: one request per write with an explicit Connection: keep-alive field.
init = function(args)
  -- The path is the one of the URL given to wrk.
  req = wrk.format("GET", wrk.path, { ["Connection"] = "keep-alive" })
end

request = function()
  return req
end
