"""What every golden translator test shares: `<dir>/<case>.in.yaml` in, one output file out,
rewritten by `make golden` and reviewed as a diff."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

IN_SUFFIX = ".in.yaml"


@dataclass(frozen=True)
class GoldenCases:
    directory: Path
    output_suffix: str
    run: Callable[[Path], str]

    def inputs(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{IN_SUFFIX}"))

    def expected(self, case: Path) -> Path:
        return case.with_name(case.name.removesuffix(IN_SUFFIX) + self.output_suffix)

    def regenerate(self) -> list[Path]:
        written = []
        for case in self.inputs():
            out = self.expected(case)
            out.write_text(self.run(case))
            written.append(out)
        return written
