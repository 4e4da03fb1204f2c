"""The test fleet (fleet.yaml, keys.yaml) and a gateway over it that tests can re-render."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from modelfleet.api.keys import ApiKey, load_api_keys
from modelfleet.api.load import load_resources
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.apply.files import publish_gateway
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.render.desired import desired
from modelfleet.render.envoy.names import CLUSTERS_FILE, ROUTES_FILE
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.inputs import FleetInputs

from .processes import EchoBackends, EnvoyProcess, free_port, wait_until

HERE = Path(__file__).parent
RELOAD_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Fleet:
    pool: ModelPool
    policy: RoutingPolicy
    keys: list[ApiKey]

    @classmethod
    def load(cls) -> Fleet:
        resources = load_resources([HERE / "fleet.yaml"])
        (policy,) = resources.policies
        pool = resources.pool(policy.namespace, policy.spec.pool)
        assert pool is not None
        return cls(pool, policy, load_api_keys(HERE / "keys.yaml"))

    @property
    def variants(self) -> list[str]:
        return [v.name for v in self.pool.spec.variants]

    def key(self, key_id: str) -> ApiKey:
        return next(k for k in self.keys if k.id == key_id)

    def observe(self, **by_variant: VariantObservation) -> dict[str, VariantObservation]:
        return {
            variant_key(self.pool.namespace, self.pool.name, name): observation
            for name, observation in by_variant.items()
        }

    def with_weights(self, route: str, weights: Mapping[str, int]) -> RoutingPolicy:
        """The policy with `route`'s backends set to `weights`."""
        data = self.policy.to_wire()
        for spec in data["spec"]["routes"]:
            if spec["name"] == route:
                spec["backends"] = [{"variant": v, "weight": w} for v, w in weights.items()]
        return RoutingPolicy.model_validate(data)


@dataclass
class Gateway:
    """A running Envoy whose files a test can re-render through the real publish path."""

    fleet: Fleet
    backends: EchoBackends
    config_dir: Path
    access_log: Path
    envoy: EnvoyProcess | None = None
    applied: dict[str, str] = field(default_factory=dict)
    # The stats listener forwards to admin, so admin needs a port known before Envoy starts.
    admin_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        assert self.envoy is not None
        return self.envoy.url

    def render(
        self,
        policy: RoutingPolicy | None = None,
        observations: Mapping[str, VariantObservation] | None = None,
        backends: Mapping[str, tuple[str, int]] | None = None,
    ) -> dict[str, str]:
        """The gateway's files; every variant is served by its echo backend unless
        `backends` says otherwise."""
        policy = policy or self.fleet.policy
        pool = self.fleet.pool
        addresses = {v: self.backends.address(v) for v in self.fleet.variants}
        result = desired(
            FleetInputs(
                now=datetime.now(UTC),
                pools=[pool],
                policies=[policy],
                observations=observations or {},
                api_keys={(policy.namespace, policy.name): self.fleet.keys},
                service_addresses={(pool.namespace, pool.name): addresses | dict(backends or {})},
                gateway=GatewaySettings(
                    config_dir=str(self.config_dir),
                    listen_host="127.0.0.1",
                    listen_port=0,
                    admin=("127.0.0.1", self.admin_port),
                    access_log=str(self.access_log),
                    stats_port=0,
                ),
            )
        )
        return dict(result.gateways[(policy.namespace, policy.name)].files)

    def apply(
        self,
        policy: RoutingPolicy | None = None,
        observations: Mapping[str, VariantObservation] | None = None,
        backends: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        """Publish the render and wait until Envoy serves its routes."""
        files = self.render(policy, observations, backends)
        if files == self.applied:
            return  # Envoy already serves exactly this; skip the validation run
        publish_gateway(self.config_dir, files)
        self.applied = files
        if self.envoy is None:
            self.envoy = EnvoyProcess.start(self.config_dir, self.config_dir.parent / "envoy")
        self.wait_for_routes(files)

    def publish_validated(self, files: dict[str, str]) -> list[Path]:
        """Just the renames, for files the caller has already validated."""
        changed = publish_gateway(self.config_dir, files, validate=None)
        self.applied = files
        return changed

    def wait_for_routes(self, files: Mapping[str, str]) -> None:
        assert self.envoy is not None
        routes, clusters = (
            yaml.safe_load(files[name])["version_info"] for name in (ROUTES_FILE, CLUSTERS_FILE)
        )
        wait_until(
            lambda: self.envoy.loaded_versions() == (routes, clusters),
            RELOAD_TIMEOUT_SECONDS,
            f"Envoy to load routes {routes} and clusters {clusters}",
        )

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
