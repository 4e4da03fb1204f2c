"""Golden cases of the workload translator: tests/golden/kube/<case>.in.yaml -> .out.yaml.

The input is a ModelPool (with Reservations, optionally) and a header document `{at: ...}`;
the output is every Deployment and Service the operator would apply at that instant.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml

from modelfleet.api.load import parse_resource
from modelfleet.api.modelpool import ModelPool
from modelfleet.plan.scaling.planner import plan_pool
from modelfleet.render.workloads import render_deployment, render_service
from tests.golden.cases import GoldenCases

CASES_DIR = Path(__file__).parent / "kube"


def run_case(case: Path) -> str:
    header, *documents = list(yaml.safe_load_all(case.read_text()))
    objects = []
    for doc in documents:
        obj, errors = parse_resource(doc, case.name)
        assert not errors, errors
        objects.append(obj)
    pools = [o for o in objects if isinstance(o, ModelPool)]
    reservations = [o for o in objects if not isinstance(o, ModelPool)]
    manifests = []
    for pool in pools:
        plan = plan_pool(pool, reservations, {}, datetime.fromisoformat(header["at"]))
        for variant_plan in plan.variants:
            variant = pool.spec.variant(variant_plan.name)
            manifests.append(render_deployment(pool, variant, variant_plan.desired_replicas))
            manifests.append(render_service(pool, variant))
    return yaml.safe_dump_all(manifests, sort_keys=False)


CASES = GoldenCases(CASES_DIR, ".out.yaml", run_case)
case_inputs = CASES.inputs
expected_output = CASES.expected
regenerate = CASES.regenerate
