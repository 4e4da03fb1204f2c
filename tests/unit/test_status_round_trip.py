"""A status read back from the API server plans as the status the operator remembered:
the simulator (and the operator between restarts) rely on it."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.api.modelpool import ModelPoolStatus
from modelfleet.api.routingpolicy import RoutingPolicyStatus
from modelfleet.plan.routing.planner import previous_weights
from modelfleet.render.desired import desired
from modelfleet.render.render_cache import RenderCache
from modelfleet.render.status import previous_from_plan, previous_from_status
from tests.unit.test_gateway_cache import NOW, cycle, inputs


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cycle(), min_size=2, max_size=5))
def test_a_status_read_back_plans_as_the_one_remembered(cycles):
    cache = RenderCache()
    statuses: dict = {}
    for index, step in enumerate(cycles):
        result = desired(inputs(step, NOW + timedelta(seconds=30 * index), statuses), cache)
        for (namespace, name), plan in result.plans.items():
            written = result.statuses[("ModelPool", namespace, name)].status
            read = ModelPoolStatus.model_validate_json(written.model_dump_json(by_alias=True))
            assert previous_from_status(read) == previous_from_plan(plan)
        for namespace, name in result.tables:
            update = result.statuses[("RoutingPolicy", namespace, name)]
            wire = update.status.model_dump_json(by_alias=True, exclude_unset=update.partial)
            read = RoutingPolicyStatus.model_validate_json(wire)
            policy = inputs(step, NOW).policies[0]
            assert previous_weights(policy.model_copy(update={"status": read})) == (
                previous_weights(policy.model_copy(update={"status": update.status}))
            )
        statuses = {(ref[0],): update.status for ref, update in result.statuses.items()}
