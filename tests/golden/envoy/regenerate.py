"""Golden cases of `modelfleet render envoy`: <case>.in.yaml -> <case>/<file>.

An input is multi-document YAML. The first document is the command line:
`{files: [paths relative to the repo], apiKeys: {keys: [...]}, backends: {variant:
HOST:PORT}, metrics: {...}, listen, admin, accessLog, configDir, policy}` (all optional);
the rest are resources. Each case runs through the real CLI, Envoy validation included.

    python -m tests.golden.envoy.regenerate     # rewrite every <case>/ directory
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from modelfleet.cli import main

CASES_DIR = Path(__file__).parent
REPO = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG_DIR = "/etc/modelfleet/gateway"
_OPTIONS = {
    "listen": "--listen",
    "admin": "--admin",
    "accessLog": "--access-log",
    "policy": "--policy",
}


def case_inputs() -> list[Path]:
    return sorted(CASES_DIR.glob("*.in.yaml"))


def expected_dir(case: Path) -> Path:
    return case.with_name(case.name.removesuffix(".in.yaml"))


def run_case(case: Path) -> dict[str, str]:
    """The files the CLI writes for `case`, by name."""
    header, *resources = list(yaml.safe_load_all(case.read_text()))
    header = header or {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        out = tmp_dir / "out"
        argv = [
            "render",
            "envoy",
            "--out",
            str(out),
            "--config-dir",
            header.get("configDir", DEFAULT_CONFIG_DIR),
        ]
        for included in header.get("files", []):
            argv += ["-f", str(REPO / included)]
        if resources:
            (tmp_dir / "resources.yaml").write_text(yaml.safe_dump_all(resources))
            argv += ["-f", str(tmp_dir / "resources.yaml")]
        if "apiKeys" in header:
            (tmp_dir / "keys.yaml").write_text(yaml.safe_dump(header["apiKeys"]))
            argv += ["--api-keys", str(tmp_dir / "keys.yaml")]
        if "metrics" in header:
            (tmp_dir / "metrics.json").write_text(json.dumps(header["metrics"]))
            argv += ["--metrics", str(tmp_dir / "metrics.json")]
        for variant, address in header.get("backends", {}).items():
            argv += ["--backend", f"{variant}={address}"]
        for field, option in _OPTIONS.items():
            if field in header:
                argv += [option, str(header[field])]
        stderr = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            status = main(argv)
        if status != 0:
            raise AssertionError(
                f"{case.name}: modelfleet render envoy exited {status}:\n{stderr.getvalue()}"
            )
        return {path.name: path.read_text() for path in sorted(out.iterdir())}


def regenerate() -> list[Path]:
    written = []
    for case in case_inputs():
        target = expected_dir(case)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for name, text in run_case(case).items():
            (target / name).write_text(text)
            written.append(target / name)
    return written


if __name__ == "__main__":
    for path in regenerate():
        print(path)
    sys.exit(0)
