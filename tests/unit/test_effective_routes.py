"""A route's status: its match is one shared model per distinct match, and the route reads
back as the whole route validated from its wire form."""

from __future__ import annotations

from modelfleet.api.routingpolicy import EffectiveRoute
from modelfleet.plan.routing.table import RouteMatchSpec, TableRoute, WeightedBackend
from modelfleet.render.status import effective_route

MATCH = RouteMatchSpec(("chat",), ("llama-8b", "llama"), (("x-team", "search"),))


def route(weights: tuple[int, int], match: RouteMatchSpec = MATCH) -> TableRoute:
    backends = (WeightedBackend("small", weights[0]), WeightedBackend("big", weights[1]))
    return TableRoute("chat", match, backends)


def test_routes_with_equal_matches_share_one_match_model():
    first, second = effective_route(route((70, 30))), effective_route(route((10, 90)))
    assert first.match is second.match
    assert [b.weight for b in second.backends] == [10, 90]
    other = effective_route(route((70, 30), RouteMatchSpec(models=("llama-70b",))))
    assert other.match is not first.match and other.match.model == ["llama-70b"]


def test_a_route_status_is_what_its_wire_form_validates_to():
    made = effective_route(route((70, 30)))
    wire = made.model_dump(by_alias=True, mode="json")
    assert EffectiveRoute.model_validate(wire) == made
    assert wire["match"] == {
        "taskType": ["chat"],
        "model": ["llama-8b", "llama"],
        "headers": [{"name": "x-team", "value": "search"}],
    }
