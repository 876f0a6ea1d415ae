-- The facts of a SCAN page's keys in one call: TYPE and PTTL of each, MEMORY USAGE of every
-- Nth (ARGV[1] = N, 0: none; ARGV[2] = how many keys came before this page; ARGV[3] = the
-- SAMPLES of MEMORY USAGE). Replies three entries per key: type, pttl, bytes (-1: not read).
-- The keys are KEYS where they can be declared (one server); on a cluster node, whose page
-- spans slots, they come after ARGV[3] and the call goes to the node that holds them all.
local every = tonumber(ARGV[1])
local before = tonumber(ARGV[2])
local samples = ARGV[3]
local names = KEYS
if #names == 0 then
  names = {}
  for index = 4, #ARGV do
    names[#names + 1] = ARGV[index]
  end
end
local facts = {}
for index, key in ipairs(names) do
  local kind = redis.call('TYPE', key)['ok']
  facts[#facts + 1] = kind
  facts[#facts + 1] = redis.call('PTTL', key)
  local bytes = -1
  if every > 0 and (before + index) % every == 0 and kind ~= 'none' then
    bytes = redis.call('MEMORY', 'USAGE', key, 'SAMPLES', samples) or -1
  end
  facts[#facts + 1] = bytes
end
return facts
