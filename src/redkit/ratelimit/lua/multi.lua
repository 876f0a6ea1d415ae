-- Several limits, all or none. ARGV[2] the rate; ARGV[3] how many limits; then, per limit,
-- its number of keys and of arguments, and its arguments (its keys are in KEYS, in order).
local rate = tonumber(ARGV[2])
local calls, k, a = {}, 1, 4
for i = 1, tonumber(ARGV[3]) do
  local key_count, arg_count = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local keys, args = {}, {}
  for j = 1, key_count do
    keys[j] = KEYS[k]
    k = k + 1
  end
  for j = 1, arg_count do
    args[j] = ARGV[a]
    a = a + 1
  end
  calls[i] = {ALGORITHMS[i], keys, args}
end

local function run(i, r)
  local call = calls[i]
  call[3][2] = r
  return call[1](call[2], call[3])
end

local replies = {}
for i = 1, #calls do
  local reply = run(i, rate)
  if reply[1] == 0 then
    -- Refused: give back what the limits before this one have just counted.
    for j = i - 1, 1, -1 do
      run(j, -rate)
    end
    if reply[7] == nil then
      reply[7] = reply[5] >= 0 and reply[5] * 1000 or -1
    end
    reply[8] = i
    return reply
  end
  replies[i] = reply
end
-- Admitted by all: report the limit with the least left.
local tightest = 1
for i = 2, #replies do
  if replies[i][3] < replies[tightest][3] then
    tightest = i
  end
end
local reply = replies[tightest]
reply[7] = reply[7] or -1
reply[8] = tightest
return reply
