"""Locations and the storage layer, on local files and a real S3-API server on loopback."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferops.cli import main
from inferops.runtime.fetch_model import fetch_model
from inferops.storage import (
    HttpsStore,
    LocalStore,
    ObjectStore,
    Storage,
    StorageError,
    parse_location,
)


@pytest.mark.parametrize(
    ("text", "scheme", "bucket", "key", "path", "name"),
    [
        ("obs://bucket/data/1.jpg", "s3", "bucket", "data/1.jpg", "", "1.jpg"),
        ("s3://bucket/data/", "s3", "bucket", "data/", "", "data"),
        ("s3://bucket", "s3", "bucket", "", "", ""),
        ("file:///tmp/x/a.csv", "file", "", "", "/tmp/x/a.csv", "a.csv"),
        ("data/a.csv", "file", "", "", "data/a.csv", "a.csv"),
        (
            "https://h.example:443/b/2.jpg?AccessKeyId=x&Signature=y%3D",
            "https",
            "",
            "",
            "",
            "2.jpg",
        ),
    ],
)
def test_parse_location(
    text: str, scheme: str, bucket: str, key: str, path: str, name: str
) -> None:
    loc = parse_location(text)
    assert (loc.scheme, loc.bucket, loc.key, loc.path, loc.name) == (
        scheme,
        bucket,
        key,
        path,
        name,
    )
    assert loc.text == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://x/y", "unsupported scheme"),
        ("s3:///key", "no bucket"),
        ("s3://b/a/../../etc", "'..' is not allowed"),
        ("", "not a location"),
        ("a\nb", "not a location"),
    ],
)
def test_bad_locations(text: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        parse_location(text)


@pytest.mark.parametrize(
    ("text", "store"),
    [
        ("obs://bucket/a.csv", ObjectStore),
        ("s3://bucket/", ObjectStore),
        ("file:///tmp/a.csv", LocalStore),
        ("data/a.csv", LocalStore),
        ("https://h.example/a.csv", HttpsStore),
    ],
)
def test_each_scheme_has_its_store(text: str, store: type) -> None:
    assert type(Storage().store_for(parse_location(text))) is store


def test_child_refuses_escaping_names() -> None:
    folder = parse_location("s3://b/out/")
    assert folder.child("r/1.txt").text == "s3://b/out/r/1.txt"
    assert parse_location("obs://b/out").child("x").text == "obs://b/out/x"
    with pytest.raises(StorageError):
        folder.child("../x")
    with pytest.raises(StorageError):
        parse_location("/tmp/out").child("/etc/passwd")


def test_local_round_trip(tmp_path: Path) -> None:
    storage = Storage()
    folder = parse_location(str(tmp_path / "out"))
    storage.write(folder.child("b/2.txt"), b"two")
    storage.write(folder.child("a.txt"), b"one")
    assert [f.name for f in storage.list_files(folder)] == ["a.txt", "2.txt"]
    assert storage.read(folder.child("a.txt")) == b"one"
    with pytest.raises(StorageError, match="larger than 2 bytes"):
        storage.read(folder.child("a.txt"), max_bytes=2)
    with pytest.raises(StorageError, match="No such file"):
        storage.read(folder.child("missing.txt"))
    shutil.rmtree(tmp_path / "out" / "b")  # a folder made by an earlier write is gone
    storage.write(folder.child("b/c/3.txt"), b"three")
    storage.write(folder.child("a.txt"), b"uno")
    assert storage.read(folder.child("b/c/3.txt")) == b"three"
    assert storage.read(folder.child("a.txt")) == b"uno"
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["3.txt", "a.txt", "b", "c"]


def test_local_writes_of_one_file_at_once_never_leave_it_half_written(tmp_path: Path) -> None:
    # The workers of a local run all record the task's worker count in one file at once.
    storage = Storage()
    target = parse_location(str(tmp_path / "out" / "task.workers"))
    body = b'{"workers": 3}' * 4096
    seen: list[bytes | None] = []
    start = threading.Barrier(4)

    def write_and_read() -> None:
        start.wait()
        for _ in range(200):
            storage.write(target, body)
            seen.append(storage.read(target))

    threads = [threading.Thread(target=write_and_read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 800
    assert all(data == body for data in seen)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["task.workers"]


def test_s3_round_trip_and_listing(s3: Any) -> None:
    s3.create_bucket(Bucket="data")
    storage = Storage()
    for i in range(1003):  # more than one page of list_objects_v2
        s3.put_object(Bucket="data", Key=f"in/{i:05d}.csv", Body=b"1,2")
    s3.put_object(Bucket="data", Key="other/x.csv", Body=b"x")
    files = list(storage.list_files(parse_location("obs://data/in/")))
    assert len(files) == 1003
    assert files[0].text == "obs://data/in/00000.csv"
    assert storage.read(files[3]) == b"1,2"
    assert storage.size(files[3]) == 3
    out = parse_location("s3://data/out/").child("r.txt")
    storage.write(out, b"result")
    assert s3.get_object(Bucket="data", Key="out/r.txt")["Body"].read() == b"result"
    with pytest.raises(StorageError, match="object not found"):
        storage.read(parse_location("s3://data/nope.csv"))
    with pytest.raises(StorageError, match="bucket not found"):
        list(storage.list_files(parse_location("s3://nobucket/x/")))


def test_fetch_model_folder_from_s3(s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="iris/v1/model.json", Body=b"{}")
    s3.put_object(Bucket="models", Key="iris/v1/config.json", Body=b"[]")
    s3.put_object(Bucket="models", Key="iris/v1/sub/w.bin", Body=b"\x00" * 10)
    s3.put_object(Bucket="models", Key="iris/v10/other", Body=b"no")
    written = fetch_model("obs://models/iris/v1", tmp_path / "m")
    assert sorted(p.relative_to(tmp_path / "m").as_posix() for p in written) == [
        "config.json",
        "model.json",
        "sub/w.bin",
    ]
    assert (tmp_path / "m" / "sub" / "w.bin").read_bytes() == b"\x00" * 10
    fetch_model("s3://models/iris/v1/model.json", tmp_path / "single")
    assert (tmp_path / "single" / "model.json").read_bytes() == b"{}"


def test_fetch_model_missing_object_is_a_clear_error(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.create_bucket(Bucket="models")
    assert main(["fetch-model", "s3://models/none", "--dest", str(tmp_path)]) == 1
    assert "s3://models/none: object not found" in capsys.readouterr().err


def test_fetch_model_from_local_folder_and_file_url(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True)
    (source / "model.json").write_text("{}")
    (source / "d" / "x").write_text("x")
    fetch_model(str(source), tmp_path / "a")
    assert (tmp_path / "a" / "d" / "x").read_text() == "x"
    fetch_model(f"file://{source}/model.json", tmp_path / "b")
    assert (tmp_path / "b" / "model.json").read_text() == "{}"


@pytest.fixture
def https_like_server(tmp_path: Path) -> Iterator[str]:
    """A plain HTTP file server standing in for a pre-signed URL host (loopback only)."""
    (tmp_path / "model.bin").write_bytes(b"weights")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_https_download_streams_to_disk(https_like_server: str, tmp_path: Path) -> None:
    storage = Storage()
    # The https code path with an http URL: the same urllib stream, no TLS on loopback.
    loc = parse_location("https://placeholder/model.bin?X-Signature=1")
    loc = type(loc)("https", f"{https_like_server}/model.bin?X-Signature=1")
    storage.download(loc, tmp_path / "out" / "model.bin")
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"weights"
    assert storage.read(loc) == b"weights"
    missing = type(loc)("https", f"{https_like_server}/missing.bin")
    with pytest.raises(StorageError, match="download failed"):
        storage.read(missing)


def test_s3_connection_pool_follows_the_worker_threads() -> None:
    """botocore's pool (10 by default) would queue the calls of more threads than that."""
    assert Storage("http://127.0.0.1:9", connections=32).s3.meta.config.max_pool_connections == 32
    assert Storage("http://127.0.0.1:9").s3.meta.config.max_pool_connections == 10
