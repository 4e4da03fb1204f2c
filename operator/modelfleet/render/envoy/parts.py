"""An xDS file written part by part: the sub-documents that repeat between renders (a
route, the Lua settings) are written once per distinct content and reused.

Most of a routes file is the same from one render to the next when the table's shape
changes (a variant leaves one route): writing it whole again is what makes such a cycle
cost. `PartWriter` writes the document with a placeholder where each `Part` stands, then
puts in each part's YAML, written once for its content and column and remembered (a
bounded store shared by every policy; the placeholder document's own YAML is kept too, cut
at its placeholders). The bytes are those of `xds_text` on the whole document (tests compare them on
every golden document): a block mapping or a sequence item is written the same at any
column, once the line width is shifted by the column, and a block scalar's empty lines
carry no indentation.

A file comes out as pieces (`pieces.PiecedText`): the skeleton's segments and the parts'
YAML as the store holds them, and a text every gateway shares (the Lua script's code, `common_texts`) split off a part's
YAML as one object for the whole process, not a copy per policy.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from modelfleet.render.envoy.pieces import PiecedText, digest_of_pieces
from modelfleet.render.envoy.render import dump_yaml, version_line

_PLACEHOLDER = "mfpart{:06d}zq"
# A placeholder as a sequence item ("- p", "- - p") or a mapping value ("key: p",
# "- key: p"): indentation, the dashes of the items the line opens, the key, the placeholder.
_PLACEHOLDER_LINE = re.compile(r"^( *)((?:- )*)([^ \n][^\n]*?: )?(mfpart\d{6}zq)$", re.M)
_ANY_PLACEHOLDER = re.compile(r"mfpart(\d{6})zq")
# The store holds each part's YAML by a digest of its content: bounded in bytes, oldest out.
STORE_BYTES = 32 * 1024 * 1024
# Documents' skeletons kept, by count: three files per policy and a new shape's routes
# (what a kept file uses of one, its segments, it holds itself anyway).
SKELETONS = 5_000
_KEY_BYTES = 100  # a key's digest, its tuple and the dict's slot, about


@dataclass(frozen=True)
class Part:
    """A sub-document (a non-empty mapping) to be written on its own and reused, known to
    the store by `key` (see `content_key`). A part may keep only its key: `make()` then
    gives the document again, called only when the store no longer holds its YAML, so a
    caller can keep many parts without their documents."""

    key: bytes
    value: dict[str, Any] | None = None
    make: Callable[[], dict[str, Any]] | None = None

    @classmethod
    def of(cls, value: dict[str, Any]) -> Part:
        return cls(content_key(value), value)

    @classmethod
    def remakeable(cls, value: dict[str, Any], make: Callable[[], dict[str, Any]]) -> Part:
        """A part of `value` that `make()` gives again: its `lean()` copy can be kept."""
        return cls(content_key(value), value, make)

    def lean(self) -> Part:
        """This part without its document (`make()` gives it again when needed)."""
        assert self.make is not None, "only a remakeable part can drop its document"
        return Part(self.key, None, self.make)

    def document(self) -> dict[str, Any]:
        if self.value is not None:
            return self.value
        assert self.make is not None
        return self.make()


def content_key(value: Any) -> bytes:
    """What the store knows a part by: a sha256 of its pickle (not a text of the part,
    which would be one more copy of every part). A pickle is exact about types and key
    order, as the YAML is, and quicker to make than JSON; two equal documents built
    differently may get different keys, which costs a store miss, never a wrong text."""
    return hashlib.sha256(pickle.dumps(value, protocol=5)).digest()


class PartWriter:
    def __init__(self, limit_bytes: int = STORE_BYTES, common_texts: Sequence[str] = ()) -> None:
        # A part's YAML as pieces (more than one where a common text stands in it), and the
        # bytes it costs the store (a common text is not the store's).
        self._yaml: OrderedDict[tuple[bytes, int, bool], tuple[tuple[str, ...], int]] = (
            OrderedDict()
        )
        self._bytes = 0
        self._limit = limit_bytes
        self._common = [_CommonText(text) for text in common_texts if text.strip("\n")]
        # Each document's skeleton (its YAML around the parts): a file's pieces are its
        # segments, not copies of them. None: a skeleton the parts cannot be put in.
        self._skeletons: OrderedDict[bytes, _Skeleton | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._yaml)

    def common_pieces(self) -> dict[int, str]:
        """The common texts as written, by id: a piece is one of them when it is the very
        object (the writer hands out one per text and indentation)."""
        return {id(text): text for common in self._common for text in common.written()}

    def xds_file(self, resources: list[Any]) -> str | None:
        """The file of `resources` (with their Parts): the bytes of `xds_text` on the whole
        document, or None when the document's own text could be taken for a placeholder."""
        pieced = self.xds_pieces(resources)
        return None if pieced is None else str(pieced)

    def xds_pieces(self, resources: list[Any]) -> PiecedText | None:
        """`xds_file` in pieces (the parts' YAML as the store holds it)."""
        pieces = self.xds_body(resources)
        if pieces is None:
            return None
        return PiecedText((version_line(digest_of_pieces(pieces)), *pieces))

    def xds_body(self, resources: list[Any]) -> list[str] | None:
        """`xds_file` without its version line, as pieces (for a caller that changes the
        text and versions it after)."""
        parts: list[Part] = []
        skeleton = self._skeleton_of({"resources": _skeleton(resources, parts)})
        if skeleton is None or len(skeleton.places) != len(parts):
            return None
        pieces: list[str] = []
        try:
            for segment, (index, column, item) in zip(
                skeleton.segments, skeleton.places, strict=False
            ):
                pieces.append(segment)
                pieces.extend(self._part_yaml(parts[index], column, item))
        except _Unplaceable:
            return None
        pieces.append(skeleton.segments[-1])
        return [piece for piece in pieces if piece]

    def _skeleton_of(self, document: dict[str, Any]) -> _Skeleton | None:
        """The document's YAML around its placeholders, from the store when the same
        skeleton was written before (a policy's routes keep theirs while only routes
        change); None when its text could be taken for a placeholder."""
        key = content_key(document)
        if key in self._skeletons:
            self._skeletons.move_to_end(key)
            return self._skeletons[key]
        skeleton = _Skeleton.of(dump_yaml(document))
        self._skeletons[key] = skeleton
        while len(self._skeletons) > SKELETONS:
            self._skeletons.popitem(last=False)
        return skeleton

    def _remember(self, key: tuple[bytes, int, bool], pieces: tuple[str, ...], size: int) -> None:
        self._yaml[key] = (pieces, size)
        self._bytes += size + _KEY_BYTES
        while self._bytes > self._limit and self._yaml:
            _, (_, old) = self._yaml.popitem(last=False)
            self._bytes -= old + _KEY_BYTES

    def _part_yaml(self, part: Part, column: int, item: bool) -> tuple[str, ...]:
        """The part's YAML at `column` without its last newline, as pieces: a sequence
        item's first line from its dash on (the caller writes what stands before it), every
        other line indented."""
        key = (part.key, column, item)
        found = self._yaml.get(key)
        if found is not None:
            self._yaml.move_to_end(key)
            return found[0]
        value = part.document()
        text = dump_yaml([value] if item else value, width=100 - column)
        if text.endswith("\n...\n"):
            # It ends in a block scalar that keeps its trailing newlines: only the whole
            # document knows whether its end needs the marker.
            raise _Unplaceable
        if item:
            first, _, rest = text.partition("\n")
            text = first + "\n" + _indented(rest, " " * column) if rest else first
        else:
            text = _indented(text, " " * column)
        for common in self._common:
            split = common.split(text)
            if split is not None:
                before, _, after = split
                pieces = tuple(piece for piece in split if piece)
                self._remember(key, pieces, len(before) + len(after))
                return pieces
        self._remember(key, (text,), len(text))
        return (text,)


@dataclass(frozen=True)
class _Skeleton:
    """A document's YAML cut at its placeholders: the text before each part's YAML (with
    the part's key or dashes), the text after the last, and where each part goes (its
    index, column and whether it is a sequence item)."""

    segments: tuple[str, ...]
    places: tuple[tuple[int, int, bool], ...]

    @classmethod
    def of(cls, text: str) -> _Skeleton | None:
        found = sorted(int(index) for index in _ANY_PLACEHOLDER.findall(text))
        if text.endswith("\n...\n"):
            return None  # see _part_yaml
        segments: list[str] = []
        places: list[tuple[int, int, bool]] = []
        at = 0
        for match in _PLACEHOLDER_LINE.finditer(text):
            indent, dashes, key, placeholder = match.groups()
            # Where the line's content starts: the key, or the part's own dash.
            column = len(indent) + len(dashes)
            if key is None:
                if not dashes:
                    return None
                segments.append(text[at : match.start()] + indent + dashes[:-2])
                places.append((_index(placeholder), column - 2, True))
            else:
                segments.append(f"{text[at : match.start()]}{indent}{dashes}{key[:-1]}\n")
                places.append((_index(placeholder), column + 2, False))
            at = match.end()
        if found != list(range(len(places))) or sorted(p[0] for p in places) != found:
            return None
        segments.append(text[at:])
        return cls(tuple(segments), tuple(places))


class _CommonText:
    """A text many parts carry as a block scalar (the Lua script's code), kept written
    out once per indentation: a part's YAML that holds it whole, line for line, keeps a
    reference to that one string instead of its own copy."""

    def __init__(self, text: str) -> None:
        self._lines = text.strip("\n").split("\n")
        self._first_line = re.compile(rf"^( *){re.escape(self._lines[0])}$", re.M)
        self._written: dict[str, str] = {}

    def split(self, text: str) -> tuple[str, str, str] | None:
        """(before, the common text as written, after) when `text` holds it, else None."""
        for match in self._first_line.finditer(text):
            written = self._at(match.group(1))
            start = match.start()
            if text.startswith(written, start):
                return text[:start], written, text[start + len(written) :]
        return None

    def written(self) -> Iterable[str]:
        return self._written.values()

    def _at(self, indent: str) -> str:
        written = self._written.get(indent)
        if written is None:
            # A block scalar's empty lines carry no indentation.
            written = "\n".join(indent + line if line else line for line in self._lines)
            self._written[indent] = written
        return written


class _Unplaceable(Exception):
    """A part that cannot be put in on its own: the caller writes the whole document."""


def _index(placeholder: str) -> int:
    return int(placeholder[6:12])


# Values with nothing inside to walk: most of a document's nodes (every new shape's routes
# walk it again), passed over without a call.
_LEAVES = frozenset((str, int, float, bool, type(None)))


def _skeleton(value: Any, parts: list[Part]) -> Any:
    if isinstance(value, Part):
        parts.append(value)
        return _PLACEHOLDER.format(len(parts) - 1)
    if isinstance(value, dict):
        return {
            key: item if type(item) in _LEAVES else _skeleton(item, parts)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [item if type(item) in _LEAVES else _skeleton(item, parts) for item in value]
    return value


def _indented(body: str, indent: str) -> str:
    """`body` (YAML ending in a newline) at `indent`, without its last newline; a block
    scalar's empty lines stay empty."""
    lines = body.split("\n")[:-1]
    return "\n".join(indent + line if line else line for line in lines)
