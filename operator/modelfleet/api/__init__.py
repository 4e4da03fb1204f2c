"""pydantic models of the three CRDs: the single source of truth for crds/."""

from modelfleet.api.common import API_VERSION, GROUP, VERSION, Condition, ObjectMeta
from modelfleet.api.modelpool import ModelPool, ModelPoolSpec, ModelPoolStatus, Variant
from modelfleet.api.reservation import Reservation, ReservationSpec, ReservationStatus
from modelfleet.api.routingpolicy import RoutingPolicy, RoutingPolicySpec, RoutingPolicyStatus

KINDS = {"ModelPool": ModelPool, "Reservation": Reservation, "RoutingPolicy": RoutingPolicy}
STATUS_MODELS = {
    "ModelPool": ModelPoolStatus,
    "Reservation": ReservationStatus,
    "RoutingPolicy": RoutingPolicyStatus,
}

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "STATUS_MODELS",
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
