"""A routes file for one shape of the routing table, with its weights left open.

The weights of a policy's routes move whenever readiness or load does; the rest of its
routes file (which routes, which backends in which weight order, the Lua settings) only
when the table's shape or the specs change. `routes_template` writes the file of a shape
once, each weight a placeholder no real number can be, and `RoutesTemplate.fill` puts the
numbers in: no YAML is built for a weight change. The routes are parts
(`render/envoy/parts.py`), so a new shape writes only the routes it changed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from typing import Any

from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.plan.budgets import Gate
from modelfleet.plan.routing.table import RoutingTable, TableRoute, WeightedBackend
from modelfleet.render.envoy.parts import Part, PartWriter
from modelfleet.render.envoy.pieces import PiecedText, digest_of_pieces
from modelfleet.render.envoy.render import version_line
from modelfleet.render.envoy.routes import route_configuration, table_routes

# Placeholders no real weight (1..100), port or limit can be: 9,876,500,000 + slot, where
# a weight's slot is its route's index times SLOTS_PER_ROUTE plus its rank in the route:
# a route that gains or loses a backend moves no other route's placeholders.
_FIRST_PLACEHOLDER = 9_876_500_000
SLOTS_PER_ROUTE = 100
_MAX_ROUTES = 1000
_WEIGHT_KEY = "weight: "


@dataclass
class RoutesTemplate:
    """The routes file of one table shape with weights open: its body as last filled, in
    pieces (`render/envoy/pieces.py`), and where each weight stands in them. A fill
    writes again only the pieces that hold a weight (a route's YAML: the Lua script and
    the rest stay the same objects) and versions the text with the digest of its pieces."""

    pieces: list[str]
    spans: dict[int, list[tuple[int, int, int]]]  # piece -> (start, end, slot) of its weights

    @classmethod
    def of(
        cls, pieces: list[str], spans: Iterable[tuple[int, int, int]], skipped: Sequence[bool]
    ) -> RoutesTemplate:
        """The template of a body in `pieces`, its weights at `spans` of the joined body
        with each `skipped` piece standing as one character (a weight's digits are never
        split between pieces: they stand inside a part's YAML)."""
        by_piece: dict[int, list[tuple[int, int, int]]] = {}
        lengths = [1 if skip else len(piece) for piece, skip in zip(pieces, skipped, strict=True)]
        ends = list(accumulate(lengths))
        index = 0
        for start, end, slot in spans:
            while ends[index] <= start:
                index += 1
            offset = ends[index] - lengths[index]
            by_piece.setdefault(index, []).append((start - offset, end - offset, slot))
        return cls(list(pieces), by_piece)

    def fill(self, weights: Mapping[int, int]) -> PiecedText:
        for index, spans in self.spans.items():
            self.pieces[index], self.spans[index] = _filled(self.pieces[index], spans, weights)
        return PiecedText((version_line(digest_of_pieces(self.pieces)), *self.pieces))


def _filled(
    old: str, spans: list[tuple[int, int, int]], weights: Mapping[int, int]
) -> tuple[str, list[tuple[int, int, int]]]:
    """`old` with each span's digits replaced by its slot's weight, and the new spans."""
    pieces, new_spans, at, length = [], [], 0, 0
    for start, end, slot in spans:
        pieces.append(old[at:start])
        length += start - at
        value = str(weights[slot])
        new_spans.append((length, length + len(value), slot))
        pieces.append(value)
        length += len(value)
        at = end
    pieces.append(old[at:])
    return "".join(pieces), new_spans


def shape_of(table: RoutingTable) -> RoutingTable:
    """The table with each weight replaced by its placeholder (for a table `shape_key`
    takes: not too large for the placeholders).

    Within a route the placeholders rank as the weights do (equal weights: the earlier
    backend ranks higher, as max() picks it), because the render reads that order: a
    route's retry goes to its heaviest other backend. So the shape keeps the order and
    the template stays right for every weight that keeps it."""
    routes = []
    for position, route in enumerate(table.routes):
        ranked = sorted(range(len(route.backends)), key=lambda i: (route.backends[i].weight, -i))
        first = position * SLOTS_PER_ROUTE
        slot_of = {index: first + rank for rank, index in enumerate(ranked)}
        backends = tuple(
            WeightedBackend(backend.variant, _FIRST_PLACEHOLDER + slot_of[index])
            for index, backend in enumerate(route.backends)
        )
        # Built field by field: dataclasses.replace costs more than the rest of the loop.
        routes.append(
            TableRoute(
                name=route.name,
                match=route.match,
                backends=backends,
                degraded_from=route.degraded_from,
                budget=route.budget,
            )
        )
    return RoutingTable(
        namespace=table.namespace, policy=table.policy, pool=table.pool, routes=tuple(routes)
    )


def shape_key(table: RoutingTable) -> tuple[tuple, dict[int, int]] | None:
    """What `shape_of` would give, as plain tuples (cheap to make and compare every cycle; the
    shape itself is made only when this changes), and the weights by slot. A backend's
    rank stands for its placeholder; whether its weight is above 0 is kept too (only
    those are first choices)."""
    if len(table.routes) > _MAX_ROUTES:
        return None
    weights: dict[int, int] = {}
    key = []
    for position, route in enumerate(table.routes):
        backends = route.backends
        if len(backends) > SLOTS_PER_ROUTE:
            return None
        ranked = sorted(range(len(backends)), key=lambda i: (backends[i].weight, -i))
        first = position * SLOTS_PER_ROUTE
        ranks = [0] * len(backends)
        for rank, index in enumerate(ranked):
            ranks[index] = rank
            weights[first + rank] = backends[index].weight
        match = route.match
        key.append(
            (
                route.name,
                match.task_types,
                match.models,
                match.headers,
                route.degraded_from,
                route.budget,
                tuple((b.variant, ranks[i], b.weight > 0) for i, b in enumerate(backends)),
            )
        )
    return tuple(key), weights


ANY_PLACEHOLDER = re.compile(r"98765\d{5}")
_SKIPPED = "\x00"  # where a common text stands in the text searched for weights


@dataclass(frozen=True)
class RouteParts:
    """A table route's Envoy routes as parts kept by key, and how often each weight
    placeholder stands in them."""

    parts: list[Part]
    weights: Counter[str]

    def lean(self) -> RouteParts:
        return RouteParts([part.lean() for part in self.parts], self.weights)


def route_parts_of(route: TableRoute, policy: RoutingPolicy) -> RouteParts:
    routes = table_routes(route, policy)
    return RouteParts(
        [Part.remakeable(r, partial(_nth_route, route, policy, n)) for n, r in enumerate(routes)],
        _placeholder_weights(routes),
    )


def _nth_route(route: TableRoute, policy: RoutingPolicy, n: int) -> dict[str, Any]:
    return table_routes(route, policy)[n]


def routes_template(
    shape: RoutingTable,
    slots: Iterable[int],
    pool: ModelPool,
    policy: RoutingPolicy,
    keys: Sequence[ApiKey],
    gates: Mapping[str, Gate],
    filter_config: Part,
    route_parts: Callable[[TableRoute], RouteParts],
    parts: PartWriter,
) -> RoutesTemplate | None:
    expected: Counter[str] = Counter()

    def routes_of(route: TableRoute) -> list[Any]:
        made = route_parts(route)
        expected.update(made.weights)
        return list(made.parts)

    # The Lua settings stand as their part (the writer asks for the document only when
    # its store lost the YAML).
    configuration = route_configuration(
        shape,
        pool,
        policy,
        keys,
        gates,
        filter_config,
        routes_of,  # type: ignore[arg-type]
    )
    host = configuration["virtual_hosts"][0]
    # Each route and the Lua settings are written once per content: a route that leaves
    # the table, or a weight placeholder that moves, rewrites only what it touches.
    made_here = [r for r in host["routes"] if not isinstance(r, Part)]
    expected.update(_placeholder_weights(made_here))
    host["routes"] = [r if isinstance(r, Part) else Part.of(r) for r in host["routes"]]
    pieces = parts.xds_body([configuration])  # the first fill puts the version line on
    if pieces is None:
        return None
    # The Lua script's code (a common text, ~45 KB) is searched for weights once, by the
    # cache, not in every template: it stands here as one character no weight ends with.
    common = parts.common_pieces()
    skipped = [common.get(id(piece)) is piece for piece in pieces]
    text = "".join(_SKIPPED if skip else piece for piece, skip in zip(pieces, skipped, strict=True))
    # A route that matches in several ways repeats its weights; every placeholder must
    # stand where a route's weight is, as often in the YAML as in the routes, and nowhere
    # else (any other use of the digits is refused, and the full render writes the file).
    spans = _weight_spans(text)
    if spans is None:
        return None
    in_yaml = Counter(text[start:end] for start, end, _ in spans)
    placeholders = {str(_FIRST_PLACEHOLDER + slot) for slot in slots}
    if in_yaml != expected or set(in_yaml) != placeholders:
        return None
    return RoutesTemplate.of(pieces, spans, skipped)


def _weight_spans(text: str) -> list[tuple[int, int, int]] | None:
    """Where each placeholder stands in `text` as a weight (`weight: <digits>` on its own
    line), with its slot; None when the digits stand anywhere else too."""
    spans = []
    for match in ANY_PLACEHOLDER.finditer(text):
        start, end = match.span()
        if not (text.endswith(_WEIGHT_KEY, 0, start) and text.startswith("\n", end)):
            return None
        spans.append((start, end, int(match.group()) - _FIRST_PLACEHOLDER))
    return spans


def _placeholder_weights(routes: Iterable[dict[str, Any]]) -> Counter[str]:
    """How often each placeholder stands as a weight of the routes' weighted clusters (the
    one place the render writes a weight)."""
    found: Counter[str] = Counter()
    for route in routes:
        action = route.get("route")
        clusters = (action.get("weighted_clusters") or {}).get("clusters", ()) if action else ()
        for cluster in clusters:
            weight = cluster.get("weight")
            if type(weight) is int and ANY_PLACEHOLDER.fullmatch(str(weight)):
                found[str(weight)] += 1
    return found
