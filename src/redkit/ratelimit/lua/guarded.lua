-- One algorithm's decision behind the deny list and the dynamic limits, with the decision
-- counted in the analytics (see redkit/ratelimit/dynamic.py). redkit composes it: the clock
-- head, then the algorithm's own script as the function `algorithm`, then this.
-- ARGV, as redkit.ratelimit.scripts.guarded_args builds it:
--   [1] now                the clock (see the head)
--   [2] retention          ms an hour's analytics stay after it ends, or "" to count nothing
--   [3] events             the hourly sets' key start ("<prefix>:events:")
--   [4] identifier         the identifier as JSON text
--   [5] deny_values_count  how many values to check against the deny list (0: none)
--   [6] override_from      "" (no dynamic limits), "key" (the global override is in KEYS) or
--                          "value" (this process read it: ARGV[7])
--   [7] global_override    the global override when override_from is "value": a number or ""
--   [8 ...]                the values to check, then the algorithm's own ARGV, whose third
--                          (the limit) an override replaces
-- KEYS: [the deny list] [the identifier's override] [the global override], as ARGV says,
-- then the algorithm's keys.
local retention = ARGV[2]
local events = ARGV[3]
local identifier = ARGV[4]
local deny_values_count = tonumber(ARGV[5])
local override_from = ARGV[6]
local global_override = ARGV[7]
local counted = retention ~= ''
local k, a = 1, 8

-- An event exactly as Upstash's SDK writes it: JSON.stringify({identifier, success}), where a
-- denied request counts under the denied value (given as JSON text too).
local function count(success, who)
  if counted then
    local hour = math.floor(NOW / 3600000) * 3600000
    local member = '{"identifier":' .. (who or identifier) .. ',"success":' .. success .. '}'
    if tonumber(redis.call('ZINCRBY', events .. hour, 1, member)) == 1 then
      -- A new event this hour (so maybe a new set): keep it for the retention, counted on
      -- the decision's clock, which may not be the server's.
      redis.call('PEXPIRE', events .. hour, hour + 3600000 + tonumber(retention) - NOW)
    end
  end
end

if deny_values_count > 0 then
  local values = {}
  for i = 1, deny_values_count do
    values[i] = ARGV[a]
    a = a + 1
  end
  local found = redis.call('SMISMEMBER', KEYS[k], unpack(values))
  k = k + 1
  for i = 1, deny_values_count do
    if found[i] == 1 then
      -- cjson writes "/" as "\/"; JSON.stringify does not. (The pattern is the two characters
      -- \ and /: in a Lua string '\/' alone is just "/".)
      count('"denied"', (string.gsub(cjson.encode(values[i]), '\\/', '/')))
      return {-1, i, NOW}
    end
  end
end
local override = nil
if override_from ~= '' then
  override = redis.call('GET', KEYS[k])
  k = k + 1
  if override_from == 'key' then
    if not override then
      override = redis.call('GET', KEYS[k])
    end
    k = k + 1
  elseif not override and global_override ~= '' then
    override = global_override
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
