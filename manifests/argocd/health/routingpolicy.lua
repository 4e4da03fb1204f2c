-- Argo CD health of a modelfleet.io RoutingPolicy: Ready once the operator has published
-- a config Envoy accepted (ConfigPublished); Degraded when the spec, the API keys or the
-- rendered config was refused (the last good config keeps serving).
local hs = {status = "Progressing", message = "Waiting for the modelfleet operator"}

local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
if ready == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.message = "Waiting for the operator to publish generation " .. generation
  return hs
end
hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Degraded"
end
return hs
