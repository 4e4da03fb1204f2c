"""Run the Argo CD health checks (manifests/argocd/health/*.lua) the way Argo CD does: the
object as the global `obj`, the script's returned table as the health. Argo CD embeds
gopher-lua, a Lua 5.1; PyPI lupa's Lua 5.1 runtime is the closest interpreter."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.deploy.chart import ROOT

HEALTH_DIR = ROOT / "manifests" / "argocd" / "health"
STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})


def script_for(kind: str) -> Path:
    return HEALTH_DIR / f"{kind.lower()}.lua"


def _to_lua(lua, value: Any) -> Any:
    if isinstance(value, Mapping):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def health(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) Argo CD would show for `obj`."""
    try:
        from lupa import lua51
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the health-check tests need PyPI lupa") from None

    lua = lua51.LuaRuntime(unpack_returned_tuples=False)
    lua.globals().obj = _to_lua(lua, obj)
    result = lua.execute(script_for(obj["kind"]).read_text())
    assert result is not None, f"{obj['kind']} health script returned nothing"
    status, message = result["status"], result["message"]
    assert status in STATUSES, f"{obj['kind']} health script returned status {status!r}"
    return status, message or ""
