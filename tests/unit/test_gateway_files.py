"""A gateway's files kept in pieces read as the text they stand for."""

from __future__ import annotations

from modelfleet.render.envoy.pieces import (
    GatewayFiles,
    PiecedText,
    digest_of_pieces,
    files_digest,
)
from modelfleet.render.envoy.xds import short_digest


def test_files_in_pieces_read_as_their_text_and_never_show_it():
    routes = PiecedText(("version_info: x\n", "resources:\n", "- key: sk-secret\n"))
    files = GatewayFiles({"envoy.yaml": "admin: {}\n", "rds.yaml": routes})
    assert files["rds.yaml"] == "version_info: x\nresources:\n- key: sk-secret\n"
    assert files == {"envoy.yaml": "admin: {}\n", "rds.yaml": str(routes)}
    assert dict(files) == {"envoy.yaml": "admin: {}\n", "rds.yaml": str(routes)}
    assert files.kept("rds.yaml") is routes
    assert files.size("rds.yaml") == len(str(routes))
    # Logged or printed, the files show their names and sizes, never a key.
    assert "sk-secret" not in repr(files)


def test_the_digest_of_pieces_is_that_of_their_text():
    pieces = ["resources:\n", "- a: 1\n", "", "- b: 2\n"]
    assert digest_of_pieces(pieces) == short_digest("".join(pieces))


def test_the_files_digest_hashes_names_and_texts_in_name_order_without_joining():
    routes = PiecedText(("version_info: x\n", "resources:\n", "- a: 1\n"))
    kept = GatewayFiles({"rds.yaml": routes, "envoy.yaml": "admin: {}\n"})
    # The hash published since the first release: each file's name and text, in name order.
    published = short_digest("envoy.yaml", "admin: {}\n", "rds.yaml", str(routes))
    assert files_digest(kept) == published
    assert files_digest(dict(kept)) == published
    assert files_digest({"envoy.yaml": "admin: {}\n"}) != published
