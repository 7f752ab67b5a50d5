"""`inferops fetch-model` never writes outside its destination: not through links in it,
not for object keys that climb out of it, and a destination that is a file is one clear
error (real S3-API server on loopback, real files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from inferops.cli import main
from inferops.runtime.fetch_model import fetch_model
from inferops.storage import StorageError


def fetch(capsys: pytest.CaptureFixture[str], source: str, dest: Path) -> tuple[int, str]:
    code = main(["fetch-model", source, "--dest", str(dest)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1
    return code, err


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.json").write_text('{"new": true}')
    (folder / "sub" / "w.bin").write_bytes(b"weights")
    return folder


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.json").write_text("precious")
    return outside


def test_dest_that_is_a_file_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, source: Path
) -> None:
    dest = tmp_path / "file"
    dest.write_text("x")
    assert fetch(capsys, str(source), dest) == (
        1,
        f"inferops: {dest}: exists and is not a folder\n",
    )
    code, err = fetch(capsys, str(source), dest / "below")
    assert code == 1 and f"{dest / 'below'}: cannot create the folder: Not a directory" in err


def test_a_file_link_in_dest_is_refused_not_followed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, source: Path, victim: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "model.json").symlink_to(victim / "model.json")
    code, err = fetch(capsys, str(source), dest)
    assert (code, err) == (
        1,
        f"inferops: {dest / 'model.json'}: is a symbolic link; refusing to write through it\n",
    )
    assert (victim / "model.json").read_text() == "precious"


def test_a_folder_link_in_dest_is_refused_not_followed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, source: Path, victim: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(victim, target_is_directory=True)
    code, err = fetch(capsys, str(source), dest)
    assert code == 1 and err == (
        f"inferops: {dest / 'sub'}: is a symbolic link; refusing to write through it\n"
    )
    assert sorted(p.name for p in victim.iterdir()) == ["model.json"]


def test_existing_files_are_replaced_whole_and_dest_may_be_a_link(
    tmp_path: Path, source: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "model.json").write_text("old")
    (tmp_path / "dest").symlink_to(real, target_is_directory=True)  # the user named it
    written = fetch_model(str(source), tmp_path / "dest")
    assert sorted(p.relative_to(tmp_path / "dest").as_posix() for p in written) == [
        "model.json",
        "sub/w.bin",
    ]
    assert (real / "model.json").read_text() == '{"new": true}'
    assert (real / "sub" / "w.bin").read_bytes() == b"weights"
    assert sorted(os.listdir(real)) == ["model.json", "sub"]  # no temporary file left


@pytest.mark.parametrize("key", ["v1/../../escape.json", "v1//etc/escape.json"])
def test_object_keys_that_climb_out_of_dest_are_refused(s3: Any, tmp_path: Path, key: str) -> None:
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="v1/model.json", Body=b"{}")
    s3.put_object(Bucket="models", Key=key, Body=b"evil")
    dest = tmp_path / "a" / "b" / "dest"
    # Storage refuses such names; fetch-model checks again before it writes anything.
    with pytest.raises(StorageError, match=r"refusing a .*(leaves its folder|not a plain path)"):
        fetch_model("s3://models/v1", dest)
    assert not list(tmp_path.rglob("escape.json"))
    assert not dest.exists() or not list(dest.iterdir())
