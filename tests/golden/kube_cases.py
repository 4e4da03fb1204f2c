"""Golden cases of the workload translator: tests/golden/kube/<case>.in.yaml -> .out.yaml.

The input is a ModelPool (with Reservations, optionally) and a header document `{at: ...}`;
the output is every Deployment and Service the operator would apply at that instant.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml

from modelfleet.api.load import parse_resource
from modelfleet.render.desired import desired
from modelfleet.render.inputs import FleetInputs
from tests.golden.cases import GoldenCases

CASES_DIR = Path(__file__).parent / "kube"


class _NoAliases(yaml.SafeDumper):
    """Objects the renderer shares (a pod's labels, a probe's action) are written out in full
    each time: anchors would make the goldens hard to review."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def run_case(case: Path) -> str:
    header, *documents = list(yaml.safe_load_all(case.read_text()))
    objects = []
    for doc in documents:
        obj, errors = parse_resource(doc, case.name)
        assert not errors, errors
        objects.append(obj)
    result = desired(
        FleetInputs(
            now=datetime.fromisoformat(header["at"]),
            pools=[o for o in objects if o.kind == "ModelPool"],
            reservations=[o for o in objects if o.kind == "Reservation"],
        )
    )
    return yaml.dump_all(result.workloads, Dumper=_NoAliases, sort_keys=False)


CASES = GoldenCases(CASES_DIR, ".out.yaml", run_case)
case_inputs = CASES.inputs
expected_output = CASES.expected
regenerate = CASES.regenerate
