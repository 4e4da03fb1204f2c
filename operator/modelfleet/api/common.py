"""Shared pieces of the three CRD models: base class, metadata, conditions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, Strict
from pydantic.alias_generators import to_camel

from modelfleet.api.names import API_VERSION, GROUP, VERSION
from modelfleet.api.sharing import share_fields_set, share_records

__all__ = ["API_VERSION", "GROUP", "VERSION"]

DNS1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1123_LABEL = re.compile(DNS1123_LABEL_PATTERN)


def _check_dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: use at most 63 lower-case letters, "
            "digits and '-', starting and ending with a letter or digit (e.g. 'qwen25-7b')"
        )
    return value


DnsLabel = Annotated[
    str,
    AfterValidator(_check_dns_label),
    Field(max_length=63, json_schema_extra={"pattern": DNS1123_LABEL_PATTERN}),
]


def rfc3339(value: datetime) -> str:
    """The one time format the operator writes: RFC 3339 in UTC, as Kubernetes does."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# An instant with its UTC offset (checked by pydantic's core, fast enough for the status the
# simulator round-trips every cycle). What the operator writes is in UTC, so it reads back
# as RFC 3339 with `Z`. Parsed from text even in the strict models.
Time = Annotated[AwareDatetime, Strict(False)]


class FieldError(ValueError):
    """A validator's complaint about a field below the one it validates."""

    def __init__(self, subpath: str, message: str):
        self.subpath = subpath
        self.message = message
        super().__init__(f"{subpath}: {message}")


def check_unique(values: list[str], field: str, fix: str, within: str = "") -> None:
    """Raise FieldError at the first repeated value: `<within>[index].<field>`."""
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise FieldError(f"{within}[{index}].{field}", f"{value!r} is listed twice: {fix}")
        seen.add(value)


class KubeModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors (typos).

    Strict: a number is a number and a flag a boolean (`gpuBudget: true` and `"8"` are
    refused, not read as 1 and 8), as the API server's schema would have it. Frozen: a
    parsed resource is what the API server said; a change is a `model_copy(update=...)`."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=False,
        strict=True,
        frozen=True,
    )

    def model_post_init(self, context: Any, /) -> None:
        share_records(self)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(BaseModel):
    """The part of metav1.ObjectMeta the operator reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    def model_post_init(self, context: Any, /) -> None:
        share_fields_set(self)

    name: DnsLabel
    namespace: DnsLabel = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")


# metav1.Condition's reason: one CamelCase word.
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(KubeModel):
    """One aspect of the resource's state (metav1.Condition)."""

    type: str = Field(description="What the condition is about, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        pattern=CONDITION_REASON,
        max_length=1024,
        description="Why, as one CamelCase word.",
    )
    message: str = Field(default="", description="Why, in words.")
    last_transition_time: Time | None = Field(
        default=None, description="When the status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation the condition was set for."
    )


class Resource(KubeModel):
    """A namespaced custom resource of group modelfleet.io."""

    # The API server accepts any DNS-1123 subdomain as a name, but the operator derives
    # Deployment, Service and label values from it, so refuse dotted or long names at admission.
    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.metadata.name.size() <= 63 && "
                    f"self.metadata.name.matches('{DNS1123_LABEL_PATTERN}')",
                    "message": "metadata.name must be a DNS-1123 label: at most 63 lower-case "
                    "letters, digits and '-', starting and ending with a letter or digit",
                }
            ]
        }
    }

    api_version: Literal["modelfleet.io/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: str
    metadata: ObjectMeta

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.metadata.namespace}/{self.metadata.name}"
