request = function()
  return wrk.format("GET", "/rest/v1/items?select=id,category,name,price,created_at&category=eq." .. math.random(0, 99) .. "&order=price.desc&limit=50")
end
