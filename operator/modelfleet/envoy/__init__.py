"""The Envoy gateway of a RoutingPolicy.

`render_gateway` is pure: RoutingTable + pool + policy + API keys -> file name -> text.
`validate_with_envoy` runs the envoy binary on a static copy; `publish_gateway` validates
and then swaps the files into a directory a running Envoy watches. `docs/gateway.md`
describes what the rendered gateway does.
"""

from .keys import ApiKey, load_api_keys, parse_api_keys
from .publish import publish_gateway
from .render import render_gateway
from .validate import EnvoyNotFound, InvalidEnvoyConfig, validate_with_envoy

__all__ = [
    "ApiKey",
    "EnvoyNotFound",
    "InvalidEnvoyConfig",
    "load_api_keys",
    "parse_api_keys",
    "publish_gateway",
    "render_gateway",
    "validate_with_envoy",
]
