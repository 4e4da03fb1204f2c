"""Benchmarks: `python -m bench` (what `make bench` runs) runs every module here that has a
`run() -> dict`; each writes bench/results/<name>.json. bench/README.md says how to read them."""


class MissingTool(RuntimeError):
    """A benchmark cannot run because an external program is not installed; the message
    says how to install it. `python -m bench` skips that benchmark instead of failing."""
