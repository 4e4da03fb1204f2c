"""Write a ConfigMap's or Secret's files into a directory the way kubelet does.

kubelet's atomic writer keeps each version in a timestamped directory, points the
`..data` symlink at the current one, and makes each key a symlink through `..data`:

    dir/..2026_01_02_03_04_05.123456789/envoy.yaml
    dir/..data -> ..2026_01_02_03_04_05.123456789
    dir/envoy.yaml -> ..data/envoy.yaml

An update writes a new timestamped directory and renames a fresh symlink over `..data`,
so a reader (Envoy's `watched_directory`) sees either the old set of files or the new
one, never a mix.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

DATA_LINK = "..data"


def _new_version_dir(directory: Path) -> Path:
    prefix = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
    version = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    version.chmod(0o755)
    return version


def current_files(directory: Path) -> dict[str, bytes]:
    """What the projection shows now ({} if nothing was projected yet)."""
    data = directory / DATA_LINK
    if not data.is_dir():
        return {}
    return {path.name: path.read_bytes() for path in sorted(data.iterdir()) if path.is_file()}


def project_files(directory: Path, files: Mapping[str, bytes]) -> bool:
    """Make `directory` show exactly `files`; False when it already did (nothing written)."""
    for key in files:
        if not key or "/" in key or key.startswith(".."):
            raise ValueError(f"{key!r} is not a valid ConfigMap key for a projected file")
    directory.mkdir(parents=True, exist_ok=True)
    if current_files(directory) == dict(files):
        return False
    data_link = directory / DATA_LINK
    previous = os.readlink(data_link) if data_link.is_symlink() else None

    version = _new_version_dir(directory)
    for key, content in files.items():
        (version / key).write_bytes(content)
    staging = directory / f"{DATA_LINK}_tmp"
    if staging.is_symlink() or staging.exists():
        staging.unlink()
    staging.symlink_to(version.name)
    os.replace(staging, data_link)  # the atomic swap

    for key in files:
        link = directory / key
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{key}")
    for entry in directory.iterdir():
        is_key_link = entry.is_symlink() and not entry.name.startswith("..")
        if is_key_link and entry.name not in files:
            entry.unlink()
    if previous and previous != version.name:
        shutil.rmtree(directory / previous, ignore_errors=True)
    return True
