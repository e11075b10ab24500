-- wrk script: one request per write with an explicit Connection: keep-alive field.
init = function(args)
  req = wrk.format("GET", "/echo?name=Abcde", { ["Connection"] = "keep-alive" })
end

request = function()
  return req
end
