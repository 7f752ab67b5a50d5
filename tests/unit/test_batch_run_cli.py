"""`inferops batch run` refuses bad options and unreadable files with one clear error and
exit 2 before any work (nothing written), and applies the options it accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from inferops.cli import main
from tests.worker_support import (
    SEED_SCHEMA,
    Recording,
    application,
    batch_service,
    manifest_lines,
    recording_model,
    serve,
)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("999,1,1,1\n")  # 999: the test model is slow
    service = tmp_path / "bs.yaml"
    service.write_text(yaml.safe_dump(batch_service(str(tmp_path / "in"), str(tmp_path / "out"))))
    app = tmp_path / "app.yaml"
    app.write_text(yaml.safe_dump(application(SEED_SCHEMA)))
    return service, app


def refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, files: tuple[Path, Path], *options: str
) -> str:
    argv = ["batch", "run", "-f", str(files[0]), "--app", str(files[1]), *options]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    assert (exited.value.code, out) == (2, "")
    assert not (tmp_path / "out").exists()  # refused before any work
    [line] = [x for x in err.splitlines() if not x.startswith(("usage:", " "))]
    return line


@pytest.mark.parametrize("value", ["0", "nan", "inf", "-1", "-0.0", "x"])
def test_request_timeout_must_be_finite_and_positive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, files: tuple[Path, Path], value: str
) -> None:
    line = refused(
        capsys, tmp_path, files, "--model-url", "http://127.0.0.1:1", "--request-timeout", value
    )
    assert line == (
        "inferops batch run: error: argument --request-timeout: "
        f"must be a finite number of seconds > 0, not {value!r}"
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("not-a-url", "is not an http:// or https:// URL with a host"),
        ("http://", "is not an http:// or https:// URL with a host"),
        ("ftp://host/", "is not an http:// or https:// URL with a host"),
        ("http://127.0.0.1:99999", "is not a URL (Port out of range"),
        ("http://[::1", "is not a URL"),
        ("http://127.0.0.1:8080/?x=1", "no query or fragment"),
    ],
)
def test_model_url_must_be_an_http_url(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    files: tuple[Path, Path],
    url: str,
    why: str,
) -> None:
    line = refused(capsys, tmp_path, files, "--model-url", url)
    assert line.startswith(f"inferops batch run: error: argument --model-url: {url!r}")
    assert why in line


def test_the_request_timeout_is_applied(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, files: tuple[Path, Path]
) -> None:
    with serve(recording_model(Recording())) as url:
        argv = ["batch", "run", "-f", str(files[0]), "--app", str(files[1]), "--model-url", url]
        code = main([*argv, "--request-timeout", "0.2", "--task-id", "T"])
    assert code == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["failed"] == 1
    [line] = manifest_lines(tmp_path / "out", "T")
    assert "did not answer within 0.2 s" in line["error_message"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a: " + "[" * 10_000, "invalid YAML: line 1: nested deeper than 100 levels"),
        ("a: " + "9" * 5000, "invalid YAML: line 1: a number has more than 256 digits"),
        ("a: &a [*a]", "invalid YAML: line 1: an alias refers to a node that contains it"),
    ],
)
def test_hostile_yaml_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    files: tuple[Path, Path],
    content: str,
    message: str,
) -> None:
    files[0].write_text(content)
    argv = ["batch", "run", "-f", str(files[0]), "--app", str(files[1])]
    assert main([*argv, "--model-url", "http://127.0.0.1:1"]) == 2
    _, err = capsys.readouterr()
    assert err == f"inferops batch run: {files[0]}: {message}\n"
