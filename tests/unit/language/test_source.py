"""YAML loading with positions (source.py): what the data is, where each value was, and
what is refused, on the YAML features a hand-written pack may use."""

from __future__ import annotations

from pathlib import Path

from attune_provider.language.source import (
    Location,
    MarkedDict,
    MarkedList,
    load_yaml_file,
    load_yaml_text,
)


def _load(text: str) -> tuple[object, list[str]]:
    loaded = load_yaml_text(text, "f.yaml")
    return loaded.data, [problem.format() for problem in loaded.problems]


def test_values_keep_their_types_and_positions() -> None:
    data, problems = _load("a: 1\nb: [x, 2.5, true, null]\nc:\n  d: 2024-01-02\n  e: 'yes'\nf: yes\n")
    assert problems == []
    assert data == {
        "a": 1,
        "b": ["x", 2.5, True, None],
        "c": {"d": "2024-01-02", "e": "yes"},  # a date is its text: the language's values are JSON's
        "f": True,
    }
    assert isinstance(data, MarkedDict) and isinstance(data["b"], MarkedList)
    assert data.loc == Location("f.yaml", 1, 1)
    assert data.key_locs["b"] == Location("f.yaml", 2, 1)
    assert data.value_locs["b"] == Location("f.yaml", 2, 4)
    assert data["b"].item_locs[2] == Location("f.yaml", 2, 13)
    assert data["c"].value_locs["e"] == Location("f.yaml", 5, 6)


def test_an_impossible_date_is_text_to_check_not_a_crash_of_the_reader() -> None:
    data, problems = _load("day: 2026-02-30\nwhen: 2026-01-31T10:00:00Z\n")
    assert problems == [] and data == {"day": "2026-02-30", "when": "2026-01-31T10:00:00Z"}


def test_a_duplicate_key_is_reported_where_it_repeats_and_the_last_value_wins() -> None:
    data, problems = _load("a: 1\nb: 2\na: 3\n")
    assert data == {"a": 3, "b": 2}
    assert problems == ["f.yaml:3:1: error: duplicate key 'a' in mapping"]


def test_anchors_aliases_and_merge_keys() -> None:
    """A key of the mapping itself overrides a merged one (YAML's merge): not a duplicate."""
    text = "base: &base {x: 1, y: [1, 2]}\nuse: *base\nmerged:\n  <<: *base\n  y: 3\n"
    data, problems = _load(text)
    assert problems == []
    assert data["use"] == {"x": 1, "y": [1, 2]}
    assert data["merged"] == {"x": 1, "y": 3}
    assert data["merged"].value_locs["y"] == Location("f.yaml", 5, 6)


def test_what_is_refused_is_named_with_its_place() -> None:
    recursive = "f.yaml:1:1: error: document expands past the limit of 1048576 bytes (aliases)"
    assert _load("a: &a [*a]\n")[1] == [recursive]
    assert _load("? [1, 2]\n: x\n")[1] == ["f.yaml:1:3: error: invalid YAML: found an unhashable mapping key"]
    unknown_tag = "f.yaml:1:4: error: invalid YAML: could not determine a constructor"
    assert _load("a: !custom 1\n")[1][0].startswith(unknown_tag)
    assert _load("a: [1\n")[1][0].startswith("f.yaml:2:1: error: invalid YAML:")
    assert _load("") == (None, [])
    control = (
        "f.yaml:2:9: error: invalid YAML: unacceptable character #x0000: control characters are not allowed"
    )
    assert _load("ref: p.w\nlabel: a\x00b\n")[1] == [control]
    assert _load("ref: p.w\nlabel: éé\x00b\n")[1] == [
        control.replace("2:9:", "2:10:")
    ]  # characters, not bytes


def test_a_file_that_is_not_utf8_is_refused_at_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_bytes(b'ref: p.w\nlabel: "\xc3\xa9 caf\xe9"\n')  # a UTF-8 "é", then a Latin-1 one
    problems = [problem.format() for problem in load_yaml_file(path, "w.yaml").problems]
    assert problems == [
        "w.yaml:2:14: error: file is not UTF-8: byte 0xe9 cannot be decoded (invalid continuation byte)"
    ]


def test_tagged_collections_load_as_pyyaml_safe_load_does() -> None:
    data, problems = _load("s: !!set {a, b}\no: !!omap [{k: 1}]\nt: !!str 5\n")
    assert problems == []
    assert data == {"s": {"a", "b"}, "o": [("k", 1)], "t": "5"}
