"""`attune-airflow init-dags DIR`: the DAG files a wheel user installs without a clone."""

from __future__ import annotations

from pathlib import Path

import pytest

from attune_provider.cli import main
from tests.support import REPO


def test_it_writes_the_two_dag_files_of_the_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "dags"
    assert main(["init-dags", str(target)]) == 0
    for name in ("attune_dags.py", "attune_errors.py"):
        assert (target / name).read_text() == (REPO / "dags" / name).read_text()
    assert main(["init-dags", str(target)]) == 0  # the same content again: nothing to refuse
    assert capsys.readouterr().out.count("wrote ") == 4


def test_a_file_of_the_same_name_with_other_content_is_kept_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "attune_dags.py"
    mine.write_text("# my own DAG file\n")
    assert main(["init-dags", str(tmp_path)]) == 1
    assert mine.read_text() == "# my own DAG file\n"
    assert "exists with other content (use --force to replace it)" in capsys.readouterr().err
    assert (tmp_path / "attune_errors.py").exists()  # the other one is written
    assert main(["init-dags", str(tmp_path), "--force"]) == 0
    assert mine.read_text() == (REPO / "dags" / "attune_dags.py").read_text()


def test_a_file_where_the_folder_should_be_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "dags.py"
    target.write_text("# a file\n")
    assert main(["init-dags", str(target)]) == 1
    err = capsys.readouterr().err
    assert f"error: cannot use {target} as the DAGs folder" in err and "Traceback" not in err


def test_parts_replace_the_single_file_and_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init-dags", str(tmp_path)]) == 0
    assert main(["init-dags", str(tmp_path), "--parts", "3"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "attune_dags_1_of_3.py",
        "attune_dags_2_of_3.py",
        "attune_dags_3_of_3.py",
        "attune_errors.py",
    ]
    assert "dags_for_airflow(part=2, parts=3)" in (tmp_path / "attune_dags_2_of_3.py").read_text()
    assert f"removed {tmp_path / 'attune_dags.py'}" in capsys.readouterr().out
    errors = (tmp_path / "attune_errors.py").read_text()  # beside parts it compiles nothing
    assert "errors_for_airflow(compile_check=False)" in errors and "--parts 3" in errors
    assert main(["init-dags", str(tmp_path), "--parts", "2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "attune_dags_1_of_2.py",
        "attune_dags_2_of_2.py",
        "attune_errors.py",
    ]
    assert main(["init-dags", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attune_dags.py", "attune_errors.py"]
    assert (tmp_path / "attune_errors.py").read_text() == (REPO / "dags" / "attune_errors.py").read_text()


def test_a_part_file_edited_by_hand_is_not_removed_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init-dags", str(tmp_path), "--parts", "2"]) == 0
    edited = tmp_path / "attune_dags_1_of_2.py"
    edited.write_text(edited.read_text() + "# mine\n")
    assert main(["init-dags", str(tmp_path), "--parts", "3"]) == 1
    assert edited.exists()
    assert "would load the workflows a second time" in capsys.readouterr().err
    assert main(["init-dags", str(tmp_path), "--parts", "3", "--force"]) == 0
    assert not edited.exists()


@pytest.mark.parametrize("parts", ["0", "-1", "two", "257"])
def test_parts_out_of_range_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parts: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["init-dags", str(tmp_path), "--parts", parts])
    assert exit_info.value.code == 2
    assert "expected a whole number from 1 to 256" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
