"""pydantic models of the three CRDs: the single source of truth for crds/."""

from modelfleet.api.common import API_VERSION, GROUP, VERSION, Condition, ObjectMeta
from modelfleet.api.modelpool import ModelPool, ModelPoolSpec, Variant
from modelfleet.api.reservation import Reservation, ReservationSpec
from modelfleet.api.routingpolicy import RoutingPolicy, RoutingPolicySpec

KINDS = {"ModelPool": ModelPool, "Reservation": Reservation, "RoutingPolicy": RoutingPolicy}

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "Condition",
    "ModelPool",
    "ModelPoolSpec",
    "ObjectMeta",
    "Reservation",
    "ReservationSpec",
    "RoutingPolicy",
    "RoutingPolicySpec",
    "Variant",
]
