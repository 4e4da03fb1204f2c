"""Cluster IPs of the local cluster's Services, allocated at create like the API server does.

The service range is loopback, 127.0.0.2 to 127.0.0.254: Linux routes all of 127.0.0.0/8
to `lo`, so the node agent's proxy can listen on a Service's own address and a client
(Envoy) reaches it with no routing set up. The loopback addresses are shared with every
other process on the machine, so the allocator prefers an address whose Service ports
nobody listens on yet (another local cluster in another test run, say).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from modelfleet_testbed.local.errors import ApiError

RANGE = "127.0.0.0/24"
FIRST_HOST, LAST_HOST = 2, 254  # .0 and .255 are not hosts; 127.0.0.1 is where pods listen
HEADLESS = "None"
_NETWORK = ipaddress.ip_network(RANGE)


def gets_cluster_ip(spec: Mapping[str, Any]) -> bool:
    """ExternalName Services have no cluster IP; every other type has one (or is headless)."""
    return spec.get("type", "ClusterIP") != "ExternalName"


def requested_ip(spec: Mapping[str, Any]) -> str | None:
    """What the client asked for: `clusterIP`, else the first of `clusterIPs`; "" is nothing."""
    wanted = spec.get("clusterIP") or next(iter(spec.get("clusterIPs") or []), None)
    return str(wanted) if wanted else None


def tcp_ports(spec: Mapping[str, Any]) -> list[int]:
    ports = []
    for entry in spec.get("ports") or []:
        if entry.get("protocol", "TCP") == "TCP" and isinstance(entry.get("port"), int):
            ports.append(entry["port"])
    return ports


def _address(host: int) -> str:
    return str(_NETWORK[host])


def _can_listen(address: str, port: int) -> bool:
    # SO_REUSEADDR, as asyncio's servers set it: only a live listener makes the bind fail,
    # not connections of a listener that just closed.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
        return True


class ClusterIPAllocator:
    """Hands out each address once while its Service lives; a freed address comes back
    only after the rest of the range has been offered (so a proxy still closing the old
    listener never races the new Service)."""

    def __init__(self) -> None:
        self._next_host = FIRST_HOST

    def allocate(self, in_use: Iterable[str], ports: Iterable[int], *, dry_run: bool) -> str:
        taken = set(in_use)
        wanted_ports = list(ports)
        hosts = list(range(self._next_host, LAST_HOST + 1)) + list(
            range(FIRST_HOST, self._next_host)
        )
        free = [host for host in hosts if _address(host) not in taken]
        if not free:
            raise ApiError(
                500,
                "Internal error occurred: failed to allocate a serviceIP: range is full "
                f"(the local cluster's service range is {RANGE})",
            )
        chosen = next(
            (h for h in free if all(_can_listen(_address(h), p) for p in wanted_ports)), free[0]
        )
        if not dry_run:
            self._next_host = chosen + 1 if chosen < LAST_HOST else FIRST_HOST
        return _address(chosen)

    @staticmethod
    def check_requested(address: str, in_use: Iterable[str]) -> None:
        """A clusterIP the client chose must be a free host address of the range."""
        invalid = f'spec.clusterIPs: Invalid value: []string{{"{address}"}}: failed to allocate IP'
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise ApiError(422, f"{invalid}: must be a valid IP address or {HEADLESS!r}") from None
        host = int(ip) - int(_NETWORK.network_address)
        if ip not in _NETWORK or not FIRST_HOST <= host <= LAST_HOST:
            raise ApiError(
                422,
                f"{invalid}: the provided IP ({address}) is not in the valid range. The range "
                f"of valid IPs is 127.0.0.{FIRST_HOST}-127.0.0.{LAST_HOST} (omit clusterIP to "
                "get one allocated)",
            )
        if address in set(in_use):
            raise ApiError(422, f"{invalid}: provided IP is already allocated")
