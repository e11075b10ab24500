-- wrk script: one keep-alive request per write accepting the coding named in the
-- ACCEPT_ENCODING environment variable (benches/load.sh's compression rows).
init = function(args)
  local coding = os.getenv("ACCEPT_ENCODING") or "gzip"
  req = wrk.format("GET", wrk.path, {
    ["Connection"] = "keep-alive",
    ["Accept-Encoding"] = coding,
  })
end

request = function()
  return req
end
