"""`make golden`: rewrite every golden output from its input; review the result as a diff."""

from __future__ import annotations

import importlib
import sys

GENERATORS = (
    "tests.golden.plan_cases",
    "tests.golden.desired_cases",
    "tests.golden.kube_cases",
    "tests.golden.chart_cases",
    "tests.golden.simulate_cases",
    "tests.golden.envoy.regenerate",
)


def main() -> int:
    for name in GENERATORS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if not name.startswith(str(err.name)):
                raise
            continue
        for path in module.regenerate():
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
