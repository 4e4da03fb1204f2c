"""The test bed's subcommands (`modelfleet demo`, `modelfleet simulate`), found by the
product's CLI through the `modelfleet.commands` entry points.

Importing this package checks that the test bed's own dependencies (the `testbed` extra)
are installed, so that a plain install says which extra to add instead of failing later.
"""

from importlib.util import find_spec

REQUIRED = ("kmock", "jsonpatch", "matplotlib", "celpy")

_missing = [name for name in REQUIRED if find_spec(name) is None]
if _missing:
    raise ModuleNotFoundError(f"No module named {_missing[0]!r}", name=_missing[0])
