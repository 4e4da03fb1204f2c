"""Writing the gateway's files where a running Envoy watches them, without it ever reading
a half-written or inconsistent set."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from modelfleet.apply.validate import validate_with_envoy
from modelfleet.render.envoy.names import ROUTES_FILE, SWAP_ORDER

# The routes hold the API keys.
PRIVATE_FILES = frozenset({ROUTES_FILE})


def publish_gateway(
    out_dir: str | Path,
    files: Mapping[str, str],
    validate: Callable[[Mapping[str, str]], None] | None = validate_with_envoy,
) -> list[Path]:
    """Validate `files`, then move each changed one into `out_dir`; return what changed.

    Each file is written in full to a private directory inside `out_dir` and renamed into
    place (an atomic replace, and the "moved into the watched directory" event Envoy
    reloads on). Clusters go before listeners and routes, so a route never names a cluster
    Envoy does not know yet. If validation fails nothing is written.
    """
    if validate is not None:
        validate(files)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(files, key=lambda n: (SWAP_ORDER.index(n) if n in SWAP_ORDER else -1, n))
    changed = [name for name in ordered if _read(out / name) != files[name]]
    if not changed:
        return []
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        for name in changed:
            path = staging / name
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(files[name])
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(path, 0o600 if name in PRIVATE_FILES else 0o644)
        for name in changed:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in changed]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return None
