"""A gateway's files kept as the pieces they were written from.

Most of a routes file is text every policy shares: the Lua script's code (json.lua,
request.lua, response.lua, about 45 KB once indented into the YAML) is the same in every
gateway, and so is a route's YAML in many. Kept as one string per policy, those copies
were most of the operator's memory at 1,000 policies. A `PiecedText` holds references to
the pieces instead (the shared ones are one object in the whole process), and the text is
joined only when it is read: to write the ConfigMap, to compare it with a live one, to
hash it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PiecedText:
    """A text as the pieces it is made of, in order."""

    pieces: tuple[str, ...]

    def __str__(self) -> str:
        return "".join(self.pieces)

    def __len__(self) -> int:
        return sum(len(piece) for piece in self.pieces)


FileText = str | PiecedText


def text_of(value: FileText) -> str:
    return value if type(value) is str else str(value)


def digest_of_pieces(pieces: Iterable[str]) -> str:
    """`xds.short_digest` of the pieces' concatenation, without joining them."""
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece.encode())
    digest.update(b"\0")
    return digest.hexdigest()[:16]


class GatewayFiles(Mapping[str, str]):
    """A gateway's files by name; a file kept in pieces is joined each time it is read
    (never kept joined: that copy is what this saves)."""

    __slots__ = ("_files",)

    def __init__(self, files: Mapping[str, FileText]) -> None:
        self._files = dict(files)

    def __getitem__(self, name: str) -> str:
        return text_of(self._files[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def kept(self, name: str) -> FileText:
        """The file as kept (its text or its pieces): the same object in two renders means
        it was handed out again, not rendered again."""
        return self._files[name]

    def pieces(self, name: str) -> tuple[str, ...]:
        kept = self._files[name]
        return kept.pieces if type(kept) is PiecedText else (kept,)

    def size(self, name: str) -> int:
        """The file's length in characters, without joining it."""
        return len(self._files[name])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}: {self.size(name)} chars" for name in self._files)
        return f"GatewayFiles({sizes})"


def files_digest(files: Mapping[str, str]) -> str:
    """`xds.short_digest` over each file's name and text in name order; a file kept in
    pieces is hashed piece by piece (the same digest without joining the ~85 KB of a
    gateway's files)."""
    pieces: list[str] = []
    for name in sorted(files):
        if pieces:
            pieces.append("\0")
        pieces += (name, "\0")
        pieces += files.pieces(name) if isinstance(files, GatewayFiles) else (files[name],)
    return digest_of_pieces(pieces)
