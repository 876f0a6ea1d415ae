-- Several limits on one identifier, all or none (see redkit/ratelimit/multi.py). redkit
-- composes it: the clock head, each algorithm's script as a function, ALGORITHMS (limit i's
-- function), then this.
-- ARGV, as redkit.ratelimit.scripts.multi_args builds it:
--   [1] now           the clock (see the head)
--   [2] rate          the cost asked of every limit (negative refunds, 0 peeks)
--   [3] limits_count  how many limits
--   [4 ...]           per limit: its number of keys, its number of arguments, its arguments
--                     (its own ARGV, whose second, the rate, this script sets)
-- KEYS: every limit's keys, in order.
local rate = tonumber(ARGV[2])
local limits_count = tonumber(ARGV[3])
local calls, k, a = {}, 1, 4
for i = 1, limits_count do
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
