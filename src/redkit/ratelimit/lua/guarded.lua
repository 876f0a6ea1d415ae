-- ARGV[2] "1" when this script counts the decision in the analytics, then the retention in
-- ms, the hourly sets' key start and the identifier as JSON text; then how
-- many values to check against the deny list (0: none), and those values; then "" (no
-- dynamic limits), "key" (the global override is in KEYS) or "value" (passed next: a number
-- or ""), and that value; then the algorithm's arguments, whose third is the limit an
-- override replaces. KEYS: [the deny list] [the identifier's override] [the global
-- override], as ARGV says, then the algorithm's keys.
local k, a = 1, 3
local counted = ARGV[2] == '1'
local retention, events, identifier
if counted then
  retention, events, identifier = tonumber(ARGV[3]), ARGV[4], ARGV[5]
  a = 6
end
-- An event exactly as Upstash's SDK writes it: JSON.stringify({identifier, success}), where a
-- denied request counts under the denied value (given as JSON text too).
local function count(success, who)
  if counted then
    local hour = math.floor(NOW / 3600000) * 3600000
    local member = '{"identifier":' .. (who or identifier) .. ',"success":' .. success .. '}'
    if tonumber(redis.call('ZINCRBY', events .. hour, 1, member)) == 1 then
      -- A new event this hour (so maybe a new set): keep it for the retention, counted on
      -- the decision's clock, which may not be the server's.
      redis.call('PEXPIRE', events .. hour, hour + 3600000 + retention - NOW)
    end
  end
end

local checks = tonumber(ARGV[a])
a = a + 1
if checks > 0 then
  local values = {}
  for i = 1, checks do
    values[i] = ARGV[a]
    a = a + 1
  end
  local found = redis.call('SMISMEMBER', KEYS[k], unpack(values))
  k = k + 1
  for i = 1, checks do
    if found[i] == 1 then
      -- cjson writes "/" as "\/"; JSON.stringify does not.
      count('"denied"', (string.gsub(cjson.encode(values[i]), '\/', '/')))
      return {-1, i, NOW}
    end
  end
end
local mode, passed = ARGV[a], ARGV[a + 1]
a = a + 2
local override = nil
if mode ~= '' then
  override = redis.call('GET', KEYS[k])
  k = k + 1
  if mode == 'key' then
    if not override then
      override = redis.call('GET', KEYS[k])
    end
    k = k + 1
  elseif not override and passed ~= '' then
    override = passed
  end
end
local keys, args = {}, {}
for i = k, #KEYS do
  keys[#keys + 1] = KEYS[i]
end
for i = a, #ARGV do
  args[#args + 1] = ARGV[i]
end
if override then
  args[3] = override
end
local reply = algorithm(keys, args)
count(reply[1] == 1 and 'true' or 'false')
return reply
