"""The image, built for real (`make image`: mmdebstrap + buildah, no daemon) and run with
runc over its unpacked root filesystem (umoci makes the OCI runtime bundle from the image's
own config: its user, environment and entrypoint), read-only as the chart runs it.

Marked `image`: `make image-test` (and CI) run it; it builds the image first when the
archive is missing. Skipped, saying what to install, where the tools are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.deploy.chart import ROOT

pytestmark = pytest.mark.image

VERSION = "0.1.0"
IMAGE = f"localhost/modelfleet:{VERSION}"
ARCHIVE = Path(
    os.environ.get("MODELFLEET_IMAGE_ARCHIVE", ROOT / "build" / "modelfleet-image.oci.tar")
)
# The unpacked image: Debian's python3 (~170 MB) and the venv (~290 MB, of which Envoy is
# ~100 MB and the kubernetes package ~125 MB). A test failing here means something heavy
# came in (pandas, matplotlib, the test bed...).
MAX_UNPACKED_MB = 600


def _missing(*tools: str) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("building and running the image needs root (buildah and runc, no daemon)")
    missing = _missing("umoci", "runc")
    if missing:
        pytest.skip(
            f"running the image needs {' and '.join(missing)}: apt-get install {' '.join(missing)}"
        )
    if not ARCHIVE.exists():
        missing = _missing("buildah", "mmdebstrap")
        if missing:
            pytest.skip(
                f"no {ARCHIVE} and no builder: apt-get install {' '.join(missing)}, or make image"
            )
        subprocess.run(
            [str(ROOT / "image" / "build.sh"), IMAGE, str(ARCHIVE)],
            check=True,
            timeout=1800,
            env={**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)},
        )
    layout = tmp_path_factory.mktemp("oci")
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(layout, filter="tar")
    unpacked = layout / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{IMAGE}", str(unpacked)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return unpacked


def run_in_image(bundle: Path, *args: str, uid: int | None = None, gid: int = 0):
    """`args` in the image as its own user (or `uid`), on a read-only root filesystem."""
    config_path = bundle / "config.json"
    original = config_path.read_text()
    config = json.loads(original)
    config["process"]["args"] = list(args)
    config["process"]["terminal"] = False
    config["root"]["readonly"] = True  # the chart's readOnlyRootFilesystem
    if uid is not None:
        config["process"]["user"] = {"uid": uid, "gid": gid}
    config_path.write_text(json.dumps(config))
    name = f"modelfleet-test-{uuid.uuid4().hex[:8]}"
    try:
        return subprocess.run(
            ["runc", "run", "--bundle", str(bundle), name],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        subprocess.run(["runc", "delete", "--force", name], capture_output=True, timeout=30)
        config_path.write_text(original)


def test_the_image_config_runs_the_operator_as_10001():
    config = json.loads(_config_of_archive())
    assert config["config"]["Entrypoint"] == ["modelfleet"]
    assert config["config"]["Cmd"] == ["run", "--all-namespaces"]
    assert config["config"]["User"] == "10001:10001"


def _config_of_archive() -> str:
    with tarfile.open(ARCHIVE) as archive:
        index = json.load(archive.extractfile("index.json"))
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(archive.extractfile(f"blobs/sha256/{digest}"))
        config_digest = manifest["config"]["digest"].split(":")[1]
        return archive.extractfile(f"blobs/sha256/{config_digest}").read().decode()


def test_modelfleet_and_envoy_run_in_the_image(bundle):
    result = run_in_image(bundle, "modelfleet", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: modelfleet" in result.stdout
    for command in ("run", "gateway-sync", "plan", "render", "crds"):
        assert command in result.stdout
    envoy = run_in_image(bundle, "envoy", "--version")
    assert envoy.returncode == 0, envoy.stderr
    assert "/1.40.0/" in envoy.stdout
    whoami = run_in_image(bundle, "id", "-u")
    assert whoami.stdout.strip() == "10001"


def test_it_runs_as_any_uid_as_openshift_assigns(bundle):
    result = run_in_image(bundle, "modelfleet", "run", "--help", uid=1000650000, gid=0)
    assert result.returncode == 0, result.stderr
    assert "--prometheus-ca-file" in result.stdout


def test_the_image_holds_the_product_alone(bundle):
    result = run_in_image(
        bundle,
        "python",
        "-c",
        "import importlib.util as u; print([m for m in ('modelfleet', 'modelfleet_testbed', "
        "'pip', 'pandas', 'matplotlib', 'prometheus_api_client', 'kubernetes') "
        "if u.find_spec(m)])",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['modelfleet', 'kubernetes']"
    demo = run_in_image(bundle, "modelfleet", "demo")
    assert demo.returncode != 0 and "testbed" in (demo.stdout + demo.stderr)


def test_the_image_size(bundle):
    rootfs = bundle / "rootfs"
    unpacked = sum(
        path.lstat().st_size
        for path in rootfs.rglob("*")
        if path.is_file() and not path.is_symlink()
    )
    archive_mb, unpacked_mb = ARCHIVE.stat().st_size / 2**20, unpacked / 2**20
    print(f"\nimage {IMAGE}: archive {archive_mb:.0f} MiB, unpacked {unpacked_mb:.0f} MiB")
    assert unpacked_mb < MAX_UNPACKED_MB
