"""Reservation: capacity held for a tenant on one variant of a pool."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from modelfleet.api.common import Condition, DnsLabel, FieldError, KubeModel, Resource, Time

CEL = "x-kubernetes-validations"


class Window(KubeModel):
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

    mode: Literal["reserved", "onDemand", "hybrid"]
    currency: str = Field(default="USD", min_length=3, max_length=3)
    reserved_price_per_replica_hour: float | None = Field(
        default=None, ge=0, description="Price of one held replica for one hour."
    )
    on_demand_price_per_request: float | None = Field(
        default=None, ge=0, description="Price of one request billed on demand."
    )
    included_requests_per_replica_hour: float = Field(
        default=0,
        ge=0,
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
    pool: DnsLabel
    variant: DnsLabel
    tenant: str = Field(min_length=1, max_length=253)
    replicas: int = Field(ge=1)
    window: Window | None = None
    billing: Billing

    def active_at(self, now: datetime) -> bool:
        return self.window is None or self.window.active_at(now)


class ReservationStatus(KubeModel):
    observed_generation: int | None = None
    granted: bool | None = None
    active: bool | None = None
    granted_replicas: int | None = None
    message: str = ""
    conditions: list[Condition] = Field(default_factory=list)


class Reservation(Resource):
    kind: Literal["Reservation"] = "Reservation"
    spec: ReservationSpec
    status: ReservationStatus | None = None
