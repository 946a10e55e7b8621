"""yamlpos: YAML parsed with the line of every key path."""

from __future__ import annotations

import pytest

from reconciler.desired import yamlpos

DOC = """\
# a comment
services:
  ollama:
    image: ollama/ollama:0.24.0
    ports:
      - "127.0.0.1:11434:11434"
      - target: 80
        published: 8080
    environment:
      A: "1"
"""


def test_lines_of_nested_keys_and_list_items() -> None:
    located = yamlpos.load(DOC)
    assert located.data["services"]["ollama"]["ports"][1] == {"target": 80, "published": 8080}
    assert located.lines[()] == 2
    assert located.lines[("services",)] == 2
    assert located.lines[("services", "ollama")] == 3
    assert located.lines[("services", "ollama", "image")] == 4
    assert located.lines[("services", "ollama", "ports")] == 5
    assert located.lines[("services", "ollama", "ports", 0)] == 6
    assert located.lines[("services", "ollama", "ports", 1)] == 7
    assert located.lines[("services", "ollama", "ports", 1, "published")] == 8
    assert located.lines[("services", "ollama", "environment", "A")] == 10


def test_line_of_falls_back_to_the_nearest_ancestor() -> None:
    located = yamlpos.load(DOC)
    assert located.line_of(("services", "ollama", "environment", "MISSING")) == 9
    assert located.line_of(("services", "nope", "image")) == 2
    assert located.line_of(()) == 2


def test_flow_style_items_share_their_line() -> None:
    located = yamlpos.load("networks: [internal, lan]\nsync: {prune: maybe}\n")
    assert located.lines[("networks", 1)] == 1
    assert located.lines[("sync", "prune")] == 2


def test_scalars_are_typed_like_safe_load() -> None:
    located = yamlpos.load("a: true\nb: 1\nc: 1.5\nd: null\ne: '1'\nf: 2024-01-01\n")
    assert located.data == yamlpos.yaml.safe_load(
        "a: true\nb: 1\nc: 1.5\nd: null\ne: '1'\nf: 2024-01-01\n")


def test_empty_document() -> None:
    located = yamlpos.load("# only a comment\n")
    assert located.data is None
    assert located.lines == {}
    assert located.line_of(("x",)) is None


def test_merge_keys_copy_the_anchor_and_explicit_keys_win() -> None:
    located = yamlpos.load(
        "x-base: &base\n"
        "  restart: always\n"
        "  image: a:1\n"
        "services:\n"
        "  one:\n"
        "    <<: *base\n"
        "    image: b:2\n")
    assert located.data["services"]["one"] == {"restart": "always", "image": "b:2"}
    assert located.lines[("services", "one", "image")] == 7
    # A merged key points at the line where the anchor defines it.
    assert located.lines[("services", "one", "restart")] == 2


def test_merge_of_several_anchors_first_wins() -> None:
    located = yamlpos.load(
        "a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n")
    assert located.data["c"] == {"k": 1, "j": 3}


def test_explicit_key_before_merge_keeps_its_line() -> None:
    located = yamlpos.load(
        "base: &b\n"
        "  a: 1\n"
        "x:\n"
        "  a: 10\n"
        "  <<: *b\n")
    assert located.data["x"] == {"a": 10}
    assert located.lines[("x", "a")] == 4


def test_duplicate_key_is_a_syntax_error_with_its_line() -> None:
    with pytest.raises(yamlpos.YamlSyntaxError) as info:
        yamlpos.load("a:\n  b: 1\n  c: 2\n  b: 3\n")
    assert info.value.line == 4
    assert str(info.value) == "duplicate key 'b' (the later value would silently win)"


@pytest.mark.parametrize(("text", "line", "words"), [
    ("a: [1\nb: 2\n", 2, "expected ',' or ']'"),
    ("a:\n  b: 1\n c: 2\n", 3, "expected <block end>"),
    ("a: b: c\n", 1, "mapping values are not allowed here"),
    ("a: 'unterminated\n", 2, "found unexpected end of stream"),
    ("a: *nowhere\n", 1, "found undefined alias"),
])
def test_syntax_errors_carry_their_line(text: str, line: int, words: str) -> None:
    with pytest.raises(yamlpos.YamlSyntaxError) as info:
        yamlpos.load(text)
    assert info.value.line == line
    assert str(info.value).startswith("invalid YAML: ")
    assert words in str(info.value)


def test_several_documents_are_refused_at_the_second() -> None:
    with pytest.raises(yamlpos.YamlSyntaxError) as info:
        yamlpos.load("a: 1\n---\nb: 2\n")
    assert info.value.line == 2


def test_several_documents_message_is_a_whole_sentence() -> None:
    with pytest.raises(yamlpos.YamlSyntaxError) as info:
        yamlpos.load("a: 1\n---\nb: 2\n")
    assert "single document" in str(info.value)


def test_complex_key_is_a_syntax_error() -> None:
    with pytest.raises(yamlpos.YamlSyntaxError) as info:
        yamlpos.load("a: 1\n? [x, y]\n: 2\n")
    assert info.value.line == 2
