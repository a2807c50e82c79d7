"""`attune-airflow validate` (docs/language.md) and the settings it reads."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from attune_provider import __version__, settings
from attune_provider.cli import build_parser, main

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
WARNING_ONLY = """\
ref: p.w
tasks:
  - name: a
    action: core.noop
    on_success: b
    decision: [{default: b}]
  - name: b
    action: core.noop
"""
BOTH = "'decision' governs success"

EXPECTED_BAD = [
    "packs/p/workflows/w.yaml:5:17: error: task 'build' transitions to unknown task 'biuld'"
    " (did you mean 'build'?)",
    "packs/p/workflows/w.yaml:6:11: warning: task 'lonely' is unreachable from the entry tasks",
    "packs/p/workflows/w.yaml:9:11: warning: task 'lonely2' is unreachable from the entry tasks",
    "packs/p/workflows/w.yaml:11:17: error: cycle: lonely -> lonely2 -> lonely",
]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


# --- validate -------------------------------------------------------------------------------


def test_problems_one_per_line_sorted_and_exit_1(packs, capsys):
    packs.pack("p", {"workflows/w.yaml": BAD_WORKFLOW})
    code, out, err = run(capsys, "validate", "--packs", "packs")
    assert code == 1
    assert out == EXPECTED_BAD
    assert err.strip() == "2 errors, 2 warnings"


def test_clean_packs_exit_0_with_nothing_on_stdout(packs, capsys):
    packs.pack("p", {"workflows/w.yaml": "ref: p.w\ntasks:\n  - name: a\n    action: core.noop\n"})
    code, out, err = run(capsys, "validate", "--packs", "packs")
    assert (code, out) == (0, [])
    assert err.strip() == "0 errors, 0 warnings"


def test_warnings_alone_exit_0(packs, capsys):
    packs.pack("p", {"workflows/w.yaml": WARNING_ONLY})
    code, out, err = run(capsys, "validate", "--packs", "packs")
    assert code == 0
    assert out == [
        f"packs/p/workflows/w.yaml:5:5: warning: task 'a' has both 'decision' and 'on_success': {BOTH}"
    ]
    assert err.strip() == "0 errors, 1 warning"


def test_packs_is_repeatable_and_paths_are_kept_as_given(packs, capsys, tmp_path):
    packs.pack("p", {"workflows/w.yaml": WARNING_ONLY})
    other = tmp_path / "other"
    (other / "q" / "workflows").mkdir(parents=True)
    (other / "q" / "pack.yaml").write_text("ref: q\n")
    (other / "q" / "workflows" / "w.yaml").write_text("ref: q.w\ntasks:\n  - name: a\n    action: p.nope\n")
    code, out, _ = run(capsys, "validate", "--packs", "packs", "--packs", str(other))
    assert code == 1
    assert out == [
        f"{other}/q/workflows/w.yaml:4:13: error: unknown action 'p.nope'",
        f"packs/p/workflows/w.yaml:5:5: warning: task 'a' has both 'decision' and 'on_success': {BOTH}",
    ]


def test_paths_limit_the_report_to_those_files(packs, capsys):
    packs.pack("p", {"workflows/w.yaml": BAD_WORKFLOW})
    packs.pack("q", {"workflows/w.yaml": "ref: q.w\ntasks:\n  - name: a\n    action: core.nope\n"})
    code, out, _ = run(capsys, "validate", "--packs", "packs", "packs/q")
    assert code == 1
    assert out == [
        "packs/q/workflows/w.yaml:4:13: error: unknown action 'core.nope' (did you mean 'core.noop'?)"
    ]
    code, out, _ = run(capsys, "validate", "--packs", "packs", "packs/p/workflows/w.yaml")
    assert (code, out) == (1, EXPECTED_BAD)


def test_a_path_finds_its_packs_directory_without_packs_option(packs, capsys, tmp_path):
    repo = tmp_path / "repo" / "packs"
    (repo / "lib" / "actions").mkdir(parents=True)
    (repo / "lib" / "pack.yaml").write_text("ref: lib\n")
    (repo / "lib" / "actions" / "tool.yaml").write_text("name: tool\nrunner_type: noop\n")
    (repo / "app" / "workflows").mkdir(parents=True)
    (repo / "app" / "pack.yaml").write_text("ref: app\ndependencies: [lib]\n")
    text = "ref: app.w\ntasks:\n  - name: a\n    action: lib.tool\n  - name: b\n    action: lib.tol\n"
    (repo / "app" / "workflows" / "w.yaml").write_text(text)
    expected = [
        "repo/packs/app/workflows/w.yaml:6:13: error: unknown action 'lib.tol' (did you mean 'lib.tool'?)"
    ]
    for target in ("repo/packs/app/workflows/w.yaml", "repo/packs/app", "repo/packs"):
        code, out, _ = run(capsys, "validate", target)
        assert (code, out) == (1, expected), target
    os.chdir(repo / "app")  # the packs directory is then "..", and files show joined to it
    code, out, _ = run(capsys, "validate", "workflows/w.yaml")
    assert (code, out) == (
        1,
        ["../app/workflows/w.yaml:6:13: error: unknown action 'lib.tol' (did you mean 'lib.tool'?)"],
    )


def test_a_missing_path_or_one_outside_the_packs_is_an_error(packs, capsys, tmp_path):
    packs.pack("p", {"workflows/w.yaml": WARNING_ONLY})
    (tmp_path / "loose.yaml").write_text("ref: x.y\n")
    code, out, _ = run(capsys, "validate", "--packs", "packs", "nope.yaml", "loose.yaml")
    assert code == 1
    assert out == [
        "loose.yaml:1:1: error: not inside a pack on the packs path (see --packs)",
        "nope.yaml:1:1: error: no such file or directory",
    ]


def test_packs_path_from_the_environment(packs, capsys, tmp_path, monkeypatch):
    packs.pack("p", {"workflows/w.yaml": WARNING_ONLY})
    (tmp_path / "more" / "q").mkdir(parents=True)
    (tmp_path / "more" / "q" / "pack.yaml").write_text("ref: q\ndependencies: [p, zz]\n")
    monkeypatch.setenv("ATTUNE_PACKS_PATH", f"packs{os.pathsep}more")
    code, out, _ = run(capsys, "validate")
    assert code == 0
    assert out == [
        "more/q/pack.yaml:2:19: warning: pack 'q' depends on pack 'zz', which is not loaded",
        f"packs/p/workflows/w.yaml:5:5: warning: task 'a' has both 'decision' and 'on_success': {BOTH}",
    ]


def test_without_any_packs_only_core_is_checked(tmp_path, monkeypatch, capsys, settings_env):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "validate")
    assert (code, out) == (0, [])
    assert err.strip() == "0 errors, 0 warnings"


def test_a_missing_packs_directory_is_an_error(tmp_path, monkeypatch, capsys, settings_env):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "validate", "--packs", "gone")
    assert (code, out) == (1, ["gone:1:1: error: packs directory does not exist"])


def test_limits_come_from_the_airflow_options(packs, capsys, monkeypatch):
    packs.pack("p", {"workflows/w.yaml": "ref: p.w\ntasks:\n  - name: a\n    action: p.sub\n"})
    packs.pack("p", {"workflows/sub.yaml": "ref: p.sub\ntasks:\n  - name: a\n    action: core.noop\n"})
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_SUBWORKFLOW_DEPTH", "0")
    code, out, _ = run(capsys, "validate", "--packs", "packs")
    assert code == 1
    assert out == [
        "packs/p/workflows/w.yaml:4:13: error: subworkflows nest 1 levels deep, more than the limit of 0:"
        " p.w -> p.sub"
    ]
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_SUBWORKFLOW_DEPTH", "")
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_FILE_BYTES", "30")
    code, out, _ = run(capsys, "validate", "--packs", "packs", "packs/p")
    assert code == 1
    assert "packs/p/workflows/w.yaml:1:1: error: file is larger than the limit of 30 bytes" in out
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_FILE_BYTES", "lots")
    code, out, err = run(capsys, "validate", "--packs", "packs")
    assert (code, out) == (2, [])
    assert "[attune] max_file_bytes must be an integer, got 'lots'" in err


def test_python_dash_m_validate(packs, tmp_path):
    packs.pack("p", {"workflows/w.yaml": BAD_WORKFLOW})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ATTUNE_PACKS_PATH", None)
    command = [
        str(ROOT / ".venv" / "bin" / "python"),
        "-m",
        "attune_provider",
        "validate",
        "--packs",
        "packs",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == EXPECTED_BAD
    assert result.stderr.strip() == "2 errors, 2 warnings"


# --- the command line itself ------------------------------------------------------------------


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "validate" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"attune-airflow {__version__}"


def test_run_is_parsed_and_handed_to_run_command(monkeypatch):
    args = build_parser().parse_args(
        ["run", "p.w", "--packs", "a", "--packs", "b", "-p", "x=1", "--param", "y=z"]
    )
    assert (args.ref, args.packs, args.param, args.json) == ("p.w", ["a", "b"], ["x=1", "y=z"], False)
    seen = []

    def run_main(parsed):
        seen.append(parsed)
        return 3

    fake = types.ModuleType("attune_provider.cli.run")
    fake.run_main = run_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "attune_provider.cli.run", fake)
    assert main(["run", "p.w", "--json"]) == 3
    assert seen[0].json is True and seen[0].param == [] and seen[0].packs is None


# --- settings ------------------------------------------------------------------------------------


def _fake_airflow_conf(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> list[tuple[str, str]]:
    asked: list[tuple[str, str]] = []

    class Conf:
        """As Airflow's conf reads an option: its environment variable, then airflow.cfg."""

        def get(self, section: str, key: str, fallback: object = None) -> object:
            asked.append((section, key))
            from_env = os.environ.get(f"AIRFLOW__{section.upper()}__{key.upper()}")
            return from_env if from_env is not None else values.get(key, fallback)

    module = types.ModuleType("airflow.configuration")
    module.conf = Conf()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airflow.configuration", module)
    return asked


def test_packs_path_precedence(monkeypatch, settings_env):
    monkeypatch.delenv("AIRFLOW__ATTUNE__PACKS_PATH")
    asked = _fake_airflow_conf(monkeypatch, {"packs_path": "/cfg/a:/cfg/b"})
    assert settings.resolve_packs_paths(["x", "y"]) == ([Path("x"), Path("y")], "cli")
    assert asked == []
    assert settings.resolve_packs_paths() == ([Path("/cfg/a"), Path("/cfg/b")], "airflow")
    assert asked == [("attune", "packs_path")]
    monkeypatch.setenv("AIRFLOW__ATTUNE__PACKS_PATH", "/env/af")
    assert settings.packs_paths() == [Path("/env/af")]
    monkeypatch.setenv("ATTUNE_PACKS_PATH", "/one::/two")
    assert settings.resolve_packs_paths() == ([Path("/one"), Path("/two")], "env")
    assert len(asked) == 2  # ATTUNE_PACKS_PATH wins without asking Airflow


def test_packs_path_default(monkeypatch, settings_env):
    monkeypatch.delenv("AIRFLOW__ATTUNE__PACKS_PATH")
    _fake_airflow_conf(monkeypatch, {})
    assert settings.resolve_packs_paths() == ([Path("packs")], "default")
    assert settings.resolve_packs_paths([]) == ([Path("packs")], "default")


def test_numeric_options(monkeypatch, settings_env):
    assert settings.max_file_bytes() == 1024 * 1024
    assert settings.max_depth() == 5
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_FILE_BYTES", "2048")
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_SUBWORKFLOW_DEPTH", " 7 ")
    assert (settings.max_file_bytes(), settings.max_depth()) == (2048, 7)
    monkeypatch.delenv("AIRFLOW__ATTUNE__MAX_FILE_BYTES")
    monkeypatch.delenv("AIRFLOW__ATTUNE__MAX_SUBWORKFLOW_DEPTH")
    _fake_airflow_conf(monkeypatch, {"max_file_bytes": "4096", "max_subworkflow_depth": "2"})
    assert (settings.max_file_bytes(), settings.max_depth()) == (4096, 2)
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_SUBWORKFLOW_DEPTH", "-1")
    with pytest.raises(ValueError, match="max_subworkflow_depth must be at least 0"):
        settings.max_depth()


def test_settings_do_not_import_airflow_when_the_environment_answers():
    code = (
        "import os, sys\n"
        "os.environ['AIRFLOW__ATTUNE__PACKS_PATH'] = 'x'\n"
        "os.environ.pop('ATTUNE_PACKS_PATH', None)\n"
        "from attune_provider import settings\n"
        "assert settings.packs_paths() == [__import__('pathlib').Path('x')]\n"
        "assert not any(m.split('.')[0] == 'airflow' for m in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
