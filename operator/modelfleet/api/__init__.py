"""pydantic models of the three CRDs: the single source of truth for crds/."""

from .common import API_VERSION, GROUP, VERSION, Condition, ObjectMeta
from .modelpool import ModelPool, ModelPoolSpec, Variant
from .reservation import Reservation, ReservationSpec
from .routingpolicy import RoutingPolicy, RoutingPolicySpec

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
