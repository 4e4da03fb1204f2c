"""Reservation: capacity held for a tenant on one variant of a pool."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from modelfleet.api.common import Condition, DnsLabel, FieldError, KubeModel, Resource, Time

CEL = "x-kubernetes-validations"


# Prices and counts a user can only exceed by mistake.
MAX_PRICE = 1_000_000.0
MAX_REPLICAS = 10_000


class Window(KubeModel):
    """When the reservation holds capacity: [start, end)."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    # date-time strings already reach CEL as timestamps
                    "rule": "!has(self.start) || !has(self.end) || self.end > self.start",
                    "message": "window.end must be after window.start",
                    "fieldPath": ".end",
                }
            ]
        }
    }

    start: Time | None = Field(default=None, description="RFC 3339; unset = already open.")
    end: Time | None = Field(default=None, description="RFC 3339; unset = open-ended.")

    @model_validator(mode="after")
    def _end_after_start(self) -> Window:
        if self.start and self.end and self.end <= self.start:
            raise FieldError("end", "is not after start: move end later or start earlier")
        return self

    def active_at(self, now: datetime) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)


class Billing(KubeModel):
    """How the tenant pays for the reservation."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "self.mode == 'onDemand' || has(self.reservedPricePerReplicaHour)",
                    "message": "reserved and hybrid billing need reservedPricePerReplicaHour",
                    "fieldPath": ".reservedPricePerReplicaHour",
                },
                {
                    "rule": "self.mode == 'reserved' || has(self.onDemandPricePerRequest)",
                    "message": "onDemand and hybrid billing need onDemandPricePerRequest",
                    "fieldPath": ".onDemandPricePerRequest",
                },
            ]
        }
    }

    mode: Literal["reserved", "onDemand", "hybrid"] = Field(
        description="reserved: pay held replica-hours; onDemand: pay per request; hybrid: "
        "held replica-hours plus requests beyond what they include."
    )
    currency: str = Field(
        default="USD", min_length=3, max_length=3, description="ISO 4217 code of the prices."
    )
    reserved_price_per_replica_hour: float | None = Field(
        default=None, ge=0, le=MAX_PRICE, description="Price of one held replica for one hour."
    )
    on_demand_price_per_request: float | None = Field(
        default=None, ge=0, le=MAX_PRICE, description="Price of one request billed on demand."
    )
    included_requests_per_replica_hour: float = Field(
        default=0,
        ge=0,
        le=1e9,
        description="hybrid: requests covered by each reserved replica-hour; the rest are "
        "billed on demand.",
    )

    @model_validator(mode="after")
    def _prices_for_mode(self) -> Billing:
        if self.mode != "onDemand" and self.reserved_price_per_replica_hour is None:
            raise FieldError("reservedPricePerReplicaHour", f"mode {self.mode!r} needs it: add it")
        if self.mode != "reserved" and self.on_demand_price_per_request is None:
            raise FieldError("onDemandPricePerRequest", f"mode {self.mode!r} needs it: add it")
        return self


class ReservationSpec(KubeModel):
    """Replicas held for a tenant on one variant of a pool."""

    pool: DnsLabel = Field(description="The ModelPool, in the same namespace.")
    variant: DnsLabel = Field(description="The variant of the pool the replicas run.")
    tenant: str = Field(
        min_length=1, max_length=253, description="Who the capacity is held for (and billed)."
    )
    replicas: int = Field(ge=1, le=MAX_REPLICAS, description="Replicas held.")
    window: Window | None = Field(default=None, description="When; unset = always.")
    billing: Billing = Field(description="How the tenant pays.")

    def active_at(self, now: datetime) -> bool:
        return self.window is None or self.window.active_at(now)


class ReservationStatus(KubeModel):
    """Whether the pool holds the replicas now."""

    observed_generation: int | None = Field(
        default=None, description="The spec generation this status is for."
    )
    granted: bool | None = Field(default=None, description="Whether all replicas are held.")
    active: bool | None = Field(default=None, description="Whether the window is open.")
    granted_replicas: int | None = Field(default=None, description="Replicas held now.")
    message: str = Field(default="", description="Why, in words.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Granted (reasons: Granted, NotGranted, NotActive, Expired, PoolNotFound, "
        "InvalidSpec).",
    )


class Reservation(Resource):
    """Capacity held for a tenant on one variant of a ModelPool, with its billing."""

    kind: Literal["Reservation"] = Field(default="Reservation", description="Reservation.")
    spec: ReservationSpec
    status: ReservationStatus | None = None
