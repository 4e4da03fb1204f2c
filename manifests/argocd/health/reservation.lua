-- Argo CD health of a modelfleet.io Reservation, read from its Granted condition.
local hs = {status = "Progressing", message = "Waiting for the modelfleet operator"}

local granted = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Granted" then
      granted = c
    end
  end
end
if granted == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and granted.observedGeneration ~= nil and granted.observedGeneration < generation then
  hs.message = "Waiting for the operator to grant generation " .. generation
  return hs
end
hs.message = granted.message or granted.reason or ""
if granted.status == "True" then
  hs.status = "Healthy"
elseif granted.reason == "NotActive" or granted.reason == "Expired" then
  -- Outside its window: nothing is held now, nothing is wrong.
  hs.status = "Suspended"
else
  hs.status = "Degraded"
end
return hs
