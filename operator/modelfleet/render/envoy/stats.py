"""The read-only listener for probes and scrapes. Envoy's admin interface can stop Envoy,
fail its health checks or log request headers (API keys included) at debug level, so it
stays on a loopback address; this listener forwards two read-only paths to it, GET only,
and answers 404 to everything else. It does not count against the connection cap, so
probes still answer while clients use up every connection."""

from __future__ import annotations

from typing import Any

from modelfleet.render.envoy.errors import error_body
from modelfleet.render.envoy.listener import HCM_TYPE
from modelfleet.render.envoy.matching import header
from modelfleet.render.envoy.names import (
    ADMIN_CLUSTER,
    STATS_LISTENER_NAME,
    STATS_PATHS,
    STATS_STAT_PREFIX,
)
from modelfleet.render.envoy.xds import HostPort, any_of, filter_name, socket_address


def stats_listener(address: HostPort) -> dict[str, Any]:
    get = [header(":method", ("GET",))]
    routes: list[dict[str, Any]] = [
        {
            "match": {"path": path, "headers": get},
            "route": {"cluster": ADMIN_CLUSTER, "timeout": "10s"},
        }
        for path in STATS_PATHS
    ]
    routes.append(
        {
            "match": {"prefix": "/"},
            "direct_response": {
                "status": 404,
                "body": {
                    "inline_string": error_body(
                        f"this port serves GET {' and GET '.join(STATS_PATHS)} only",
                        "invalid_request_error",
                        "unknown_url",
                    )
                },
            },
        }
    )
    manager = {
        "@type": any_of(HCM_TYPE),
        "stat_prefix": STATS_STAT_PREFIX,
        "codec_type": "AUTO",
        "normalize_path": True,
        "merge_slashes": True,
        "request_headers_timeout": "5s",
        "stream_idle_timeout": "30s",
        "route_config": {
            "name": STATS_LISTENER_NAME,
            "virtual_hosts": [{"name": STATS_LISTENER_NAME, "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {
                "name": filter_name("router"),
                "typed_config": {"@type": any_of("envoy.extensions.filters.http.router.v3.Router")},
            }
        ],
    }
    return {
        "name": STATS_LISTENER_NAME,
        "address": socket_address(address),
        "ignore_global_conn_limit": True,
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def admin_cluster(admin: HostPort) -> dict[str, Any]:
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(admin)}}]}],
        },
    }
