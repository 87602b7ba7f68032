request = function()
  return wrk.format("GET", "/rest/v1/items?select=id,category,name,price,created_at&id=eq." .. math.random(1, 10000))
end
