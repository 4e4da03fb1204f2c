-- Argo CD health of a modelfleet.io ModelPool, read from the conditions the operator
-- writes (Ready, MetricsAvailable, CapacityLimited, Overcommitted).
local hs = {status = "Progressing", message = "Waiting for the modelfleet operator"}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local ready = condition("Ready")
if ready == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.message = "Waiting for the operator to plan generation " .. generation
  return hs
end
if ready.status == "False" and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = "Invalid spec: " .. (ready.message or "")
  return hs
end
local overcommitted = condition("Overcommitted")
if overcommitted ~= nil and overcommitted.status == "True" then
  hs.status = "Degraded"
  hs.message = "Overcommitted: " .. (overcommitted.message or "")
  return hs
end
-- Replicas still loading their model have no metrics yet either: that is progress.
if ready.status ~= "True" then
  hs.message = ready.message or "Replicas starting"
  return hs
end
local metrics = condition("MetricsAvailable")
if metrics ~= nil and metrics.status == "False" then
  hs.status = "Degraded"
  hs.message = "No queue metrics, replicas held: " .. (metrics.message or "")
  return hs
end
hs.status = "Healthy"
hs.message = ready.message or "Every variant has its replicas"
local limited = condition("CapacityLimited")
if limited ~= nil and limited.status == "True" then
  hs.message = hs.message .. "; capacity limited: " .. (limited.message or "")
end
return hs
