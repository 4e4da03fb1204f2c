"""A file written part by part has the bytes of the whole document written at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.render.envoy.parts import Part, PartWriter
from modelfleet.render.envoy.render import dump_yaml, version_line, xds_text

GOLDEN_FILES = sorted(Path("tests/golden").glob("**/[lcr]ds.yaml"))


def with_parts(value, choose, depth=0):
    """`value` with the mappings `choose` picks (sequence items, mapping values) as Parts
    (a part holds no part)."""
    if isinstance(value, dict):
        return {
            key: Part.of(item)
            if depth >= 2 and isinstance(item, dict) and item and choose()
            else with_parts(item, choose, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            Part.of(item)
            if depth >= 2 and isinstance(item, dict) and item and choose()
            else with_parts(item, choose, depth + 1)
            for item in value
        ]
    return value


def whole(resources):
    return xds_text(resources)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=str)
@pytest.mark.parametrize("every", [1, 2, 3])
def test_golden_documents_written_in_parts_are_the_same_bytes(path, every):
    resources = yaml.safe_load(path.read_text())["resources"]
    count = iter(range(10**6))
    parted = with_parts(resources, lambda: next(count) % every == 0)
    writer = PartWriter()
    text = writer.xds_file(parted)
    assert text == whole(resources)
    assert len(writer) > 0
    again = writer.xds_file(parted)  # from the store this time
    assert again == text


# Scalars that test the writer's assumptions: folding at the line width, block scalars
# with empty lines, leading spaces and trailing newlines, and line separators other than
# "\n" (not lines to YAML's block scalars, and not to be indented).
scalars = st.one_of(
    st.integers(-5, 10**12),
    st.booleans(),
    st.none(),
    st.sampled_from(
        [
            "plain",
            "a " * 70,
            "x: y",
            "- item",
            "true",
            "01",
            "line\n\nafter a blank\n",
            "  leading\nspaces\n",
            "keep\n\n\n",
            "no newline at the end\nof this",
            "sep\u2028arated\x85too",
            "'quoted' \"both\" " * 9,
            "mfpart000001zq",
        ]
    ),
    st.text(max_size=120),
)
keys = st.sampled_from(["name", "match", "route", "a b", "weight", "- dash", "k: v"])
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dictionaries(keys, documents, min_size=1, max_size=4), min_size=1, max_size=3),
    st.randoms(use_true_random=False),
)
def test_any_document_written_in_parts_is_the_same_or_refused(resources, random):
    parted = with_parts(resources, lambda: random.random() < 0.5)
    written = PartWriter().xds_file(parted)
    if written is not None:  # None: the caller writes the whole document
        assert written == whole(resources)


@pytest.mark.parametrize(
    "version",
    [
        "0f3a9c2e11b47d58",
        "1234567890123456",
        "0000000000000000",
        "0b01101001011010",
        "12e4567890123456",
    ],
)
def test_the_version_line_is_what_the_dumper_writes(version):
    # A digest YAML would read as a number is quoted, as the dumper quotes it.
    assert version_line(version) == dump_yaml({"version_info": version})


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=str)
def test_an_xds_file_is_the_whole_document_dumped(path):
    document = yaml.safe_load(path.read_text())
    text = xds_text(document["resources"])
    assert text == path.read_text()
    assert text == dump_yaml({"version_info": yaml.safe_load(text)["version_info"], **document})


def test_a_lean_part_is_made_again_only_when_the_store_lost_its_yaml():
    route = {"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c", "weight": 3}}
    made = []

    def make():
        made.append(1)
        return dict(route)

    lean = Part.remakeable(route, make).lean()
    assert lean.value is None
    writer = PartWriter()
    assert writer.xds_file([{"name": "rc", "routes": [lean]}]) == whole(
        [{"name": "rc", "routes": [route]}]
    )
    assert len(made) == 1  # the store had no YAML for it
    writer.xds_file([{"name": "rc", "routes": [lean]}])
    assert len(made) == 1  # now it has
    forgetful = PartWriter(limit_bytes=0)
    for _ in range(2):
        assert forgetful.xds_file([{"routes": [lean]}]) == whole([{"routes": [route]}])
    assert len(made) == 3


def test_a_common_text_is_one_object_in_every_file_that_holds_it():
    """The Lua script's code in two gateways' routes files: the same bytes as a whole
    dump, and one string for both (the operator's memory at 1,000 policies)."""
    from modelfleet.render.envoy.lua import gateway_script, script_body

    writer = PartWriter(common_texts=[script_body()])
    files = []
    for tenant in ("research", "support"):
        script = gateway_script({"key-1": tenant})
        filter_config = {"lua": {"source_code": {"inline_string": script}}}
        resources = [{"name": "rc", "typed_per_filter_config": Part.of(filter_config)}]
        pieced = writer.xds_pieces(resources)
        assert str(pieced) == whole([{"name": "rc", "typed_per_filter_config": filter_config}])
        files.append(pieced)
    longest = [max(f.pieces, key=len) for f in files]
    assert longest[0] is longest[1]
    assert len(longest[0]) > len(script_body()) * 0.9
    assert str(files[0]) != str(files[1])


@given(st.text(alphabet="ab -\n\t", max_size=60), st.text(alphabet="ab -\n", max_size=60))
@settings(max_examples=200, deadline=None)
def test_a_common_text_split_off_never_changes_the_bytes(before, common):
    """Whatever stands around it (or whether YAML can write it as a block at all), a file
    with a common text is the whole document's bytes."""
    writer = PartWriter(common_texts=[common])
    value = {"inline_string": before + common, "after": "x"}
    resources = [{"name": "rc", "config": Part.of(value)}]
    assert writer.xds_file(resources) in (None, whole([{"name": "rc", "config": value}]))
