wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format("POST", "/rest/v1/items", nil, '{"category":' .. math.random(0, 99) .. ',"name":"bench","price":1.5}')
end
