request = function()
  return wrk.format("GET", "/rest/v1/items?select=id,name,reviews(stars,body)&id=eq." .. math.random(1, 10000))
end
