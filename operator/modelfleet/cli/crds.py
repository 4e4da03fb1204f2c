"""`modelfleet crds`: CRD YAML from the pydantic models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "crds", help="write or print the CRD YAML generated from the models"
    )
    parser.add_argument("--out", type=Path, help="directory to write one file per CRD into")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelfleet.api.crd import crd_documents, write_crds

    if args.out:
        for path in write_crds(args.out):
            print(path)
    else:
        yaml.safe_dump_all(crd_documents(), sys.stdout, sort_keys=False)
    return 0
