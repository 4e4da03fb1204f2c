"""The product apart from its test bed: what `pip install modelfleet` (no extra) and the
image carry runs without the test bed's packages, and never imports them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = REPO / "operator" / "modelfleet"
TESTBED_ONLY = ("kmock", "jsonpatch", "matplotlib", "modelfleet_testbed")
# Each layer imports only from the layers before it (and from itself).
LAYERS = ("api", "observe", "plan", "render", "apply", ("controller", "sidecar"), "cli")

# Run a command as if the test bed's packages were not installed.
WITHOUT_TESTBED = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Absent())
sys.argv = ["modelfleet", *{argv!r}]
from modelfleet.cli import main
sys.exit(main())
"""


def run_without_testbed(*argv: str) -> subprocess.CompletedProcess:
    code = WITHOUT_TESTBED.format(blocked=TESTBED_ONLY, argv=list(argv))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_the_package_dependencies_leave_the_test_bed_to_its_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    for name in ("kmock", "jsonpatch", "matplotlib"):
        assert name not in runtime
        assert any(name in dep for dep in project["optional-dependencies"]["testbed"])


def test_plan_render_and_crds_work_without_the_test_bed(tmp_path):
    planned = run_without_testbed("plan", "-f", "manifests/samples", "-o", "json")
    assert planned.returncode == 0, planned.stderr
    assert '"pools"' in planned.stdout
    crds = run_without_testbed("crds", "--out", str(tmp_path))
    assert crds.returncode == 0, crds.stderr
    for command in ("run", "gateway-sync", "render"):
        shown = run_without_testbed(command, "--help")
        assert shown.returncode == 0, shown.stderr


def test_demo_and_simulate_name_the_extra_to_install():
    for command in ("demo", "simulate"):
        missing = run_without_testbed(command)
        assert missing.returncode == 2
        assert "pip install 'modelfleet[testbed]'" in missing.stderr
    listed = run_without_testbed("--help")
    assert "demo" in listed.stdout and "simulate" in listed.stdout


def test_run_imports_no_test_bed_module_and_no_table_printer():
    shown = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "modelfleet.cli", "run", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in shown.stderr.splitlines()}
    assert not {m for m in imported if m.split(".")[0] in (*TESTBED_ONLY, "rich", "pygments")}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "modelfleet" or len(parts) < 2:
        return None
    for index, layer in enumerate(LAYERS):
        if parts[1] in (layer if isinstance(layer, tuple) else (layer,)):
            return index
    return None


def test_product_imports_point_down_and_never_at_the_test_bed():
    upward = []
    for path in PRODUCT.rglob("*.py"):
        relative = path.relative_to(PRODUCT.parent).with_suffix("")
        me = ".".join(relative.parts)
        own = _layer(me)
        for module in _imports(path):
            assert module.split(".")[0] != "modelfleet_testbed", f"{me} imports {module}"
            theirs = _layer(module)
            if own is None or theirs is None:
                continue
            same_package = module.split(".")[1] == me.split(".")[1]
            if theirs > own or (theirs == own and not same_package):
                upward.append(f"{me} -> {module}")
    assert upward == []
