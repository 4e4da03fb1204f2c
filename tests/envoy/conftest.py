"""Shared, expensive pieces of the gateway tests: one echo-backend process and one Envoy for
the whole session, both stopped at the end."""

from __future__ import annotations

import pytest

from .fleet import Fleet, Gateway
from .processes import EchoBackends


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    return Fleet.load()


@pytest.fixture(scope="session")
def backends(fleet: Fleet):
    echo = EchoBackends(fleet.variants)
    yield echo
    echo.stop()


@pytest.fixture(scope="session")
def live_gateway(tmp_path_factory, fleet: Fleet, backends: EchoBackends):
    """The one Envoy of the session; tests that re-render it use this directly."""
    root = tmp_path_factory.mktemp("gateway")
    gateway = Gateway(fleet, backends, root / "config", root / "access.log")
    try:
        gateway.apply()
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def gateway(live_gateway: Gateway, backends: EchoBackends) -> Gateway:
    """The session's Envoy serving the fleet's own policy with no observations, every echo
    backend answering normally."""
    backends.reset()
    live_gateway.apply()
    return live_gateway
