-- wrk: 16 requests per write (HTTP/1.1 pipelining), as in the TechEmpower plaintext test.
local depth = 16
local req
init = function(args)
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil) end
  req = table.concat(r)
end
request = function() return req end
