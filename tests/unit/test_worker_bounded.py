"""The worker's memory is bounded whatever the model answers: answers over the catalog's
maxResponseBytes fail their source (read in chunks, never whole), redirects are failures,
and CSV results reach storage in parts while the file is still being sent.

Behaviour only: the peak RSS this buys is measured by bench/worker_memory_bench.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from inferops.contract.batch_worker import config_from_service
from inferops.storage import Storage, StorageError, parse_location
from inferops.storage.object_store import MultipartWriter
from inferops.worker.client import ModelClient
from inferops.worker.csv_rows import CsvRows
from inferops.worker.encoding import compile_encoder
from inferops.worker.runner import run_local
from tests.worker_support import (
    FILE_SCHEMA,
    SEED_SCHEMA,
    application,
    batch_service,
    manifest_lines,
    serve,
)

MIB = 1024 * 1024


def answering(size: int, framing: str, counter: list[str]) -> web.Application:
    """A model answering `size` bytes with a Content-Length, chunked, or gzip-compressed
    (a small body on the wire that inflates to `size`), and a redirect at /moved."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        counter.append(request.path)
        if request.path == "/moved":
            raise web.HTTPFound("/elsewhere")
        if request.path == "/elsewhere":
            return web.json_response({"answered": "elsewhere"})
        body = b'"' + b"a" * (size - 2) + b'"'
        if framing == "gzip":
            response = web.Response(body=body, content_type="application/json")
            response.enable_compression(web.ContentCoding.gzip)
            return response
        stream = web.StreamResponse(headers={"Content-Type": "application/json"})
        if framing == "length":
            stream.content_length = size
        await stream.prepare(request)
        for start in range(0, size, 4096):
            await stream.write(body[start : start + 4096])
        await stream.write_eof()
        return stream

    app = web.Application()
    for path in ("/", "/moved", "/elsewhere"):
        app.router.add_post(path, handle)
    return app


@pytest.mark.parametrize("framing", ["length", "chunked", "gzip"])
def test_an_answer_over_the_limit_fails_its_source(tmp_path: Path, framing: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"png")
    (tmp_path / "in" / "rows.csv").write_text("1,2,3,4\n5,6,7,8\n")
    calls: list[str] = []
    with serve(answering(4096, framing, calls)) as url:
        limits = {"maxResponseBytes": 4000}
        for schema, task in ((FILE_SCHEMA, "F"), (SEED_SCHEMA, "J")):
            service = batch_service(str(tmp_path / "in"), str(tmp_path / task))
            run_local(service, application(schema), url, task, limits=limits)
    size = " (4096 bytes)" if framing == "length" else ""
    too_large = f"the model's answer is larger than the 4000-byte limit{size} (maxResponseBytes)"
    [image, _] = manifest_lines(tmp_path / "F", "F")
    assert image == {"source": str(tmp_path / "in" / "a.png"), "result": "FAILED"} | {
        "error_message": too_large
    }
    [_, csv] = manifest_lines(tmp_path / "J", "J")
    assert csv["error_message"].startswith(f"2 of 2 rows failed: row 1: {too_large}; row 2: ")
    result = tmp_path / "J" / "infer-result-J" / "rows.csv_result.txt"
    assert [json.loads(line) for line in result.read_text().splitlines()] == [
        {"error": too_large}
    ] * 2
    assert len(calls) == 4  # one request per image and per row: not retried


def test_answers_within_the_limit_pass_whole(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"png")
    calls: list[str] = []
    with serve(answering(4096, "gzip", calls)) as url:
        service = batch_service(str(tmp_path / "in"), str(tmp_path / "out"))
        limits = {"maxResponseBytes": 4096}
        [summary] = run_local(service, application(FILE_SCHEMA), url, "W", limits=limits)
    assert summary.succeeded == 1
    result = tmp_path / "out" / "infer-result-W" / "a.png_result.txt"
    assert result.read_bytes() == b'"' + b"a" * 4094 + b'"'


def test_a_model_redirect_is_a_failure_not_followed(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"png")
    calls: list[str] = []
    with serve(answering(10, "length", calls)) as url:
        app = application(FILE_SCHEMA, url="/moved")
        service = batch_service(str(tmp_path / "in"), str(tmp_path / "out"))
        [summary] = run_local(service, app, url, "D")
    [line] = manifest_lines(tmp_path / "out", "D")
    assert summary.failed == 1 and calls == ["/moved"]
    assert line["error_message"].startswith("the model answered HTTP 302: ")
    assert line["error_message"].endswith("(redirects are not followed)")


def test_csv_results_reach_storage_while_rows_are_sent() -> None:
    """The result of a CSV file is handed to storage in parts as its rows are answered,
    in row order, not held until the last row."""
    rows = 2000
    requests: list[int] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        requests.append(body["data"]["req_data"][0]["input_1"])
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/", echo)
    parts: list[tuple[int, bytes]] = []  # (requests answered when the part left, the part)

    async def sink(part: bytes) -> None:
        parts.append((len(requests), part))

    async def run(url: str) -> CsvRows:
        config = config_from_service(
            batch_service("s3://bkt/in/", "s3://bkt/out/", concurrency=4),
            application(SEED_SCHEMA),
            url,
            "t",
        )
        data = "".join(f"{i},1,1,1\n" for i in range(rows)).encode()
        csv = CsvRows(data, compile_encoder(config.mapping or {}), sink, part_bytes=4096)
        async with ModelClient(config) as client:
            lanes = asyncio.Semaphore(4)
            await asyncio.gather(*(csv.send(client, lanes) for _ in range(4)))
        await csv.finish()
        return csv

    with serve(app) as url:
        csv = asyncio.run(run(url))
    assert csv.failure() is None and len(parts) > 10
    assert parts[0][0] < rows / 4  # the first part left long before the last row
    assert all(len(part) >= 4096 for _, part in parts[:-1])
    lines = [json.loads(line) for _, part in parts for line in part.splitlines()]
    assert [line["data"]["req_data"][0]["input_1"] for line in lines] == list(range(rows))


def test_a_csv_file_with_every_row_failing_keeps_only_the_first_errors() -> None:
    async def sink(part: bytes) -> None:
        pass

    data = b"x,1,1,1\n" * 1000
    csv = CsvRows(data, compile_encoder(SEED_MAPPING), sink)
    asyncio.run(csv.send(None, asyncio.Semaphore(1)))  # type: ignore[arg-type] (no row is sent)
    assert csv.failure() == (
        "1000 of 1000 rows failed: "
        + "; ".join(f"row {n}: column 0: not a number" for n in range(1, 6))
        + "; ..."
    )
    assert len(csv.errors) == 5


SEED_MAPPING: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {
            "type": "object",
            "properties": {
                "req_data": {
                    "type": "array",
                    "items": [
                        {
                            "type": "object",
                            "properties": {"input_1": {"type": "number", "index": 0}},
                        }
                    ],
                }
            },
        }
    },
}


def test_multipart_writer_parts_commit_and_abort(s3: Any) -> None:
    s3.create_bucket(Bucket="data")
    storage = Storage()
    part = 5 * MIB  # the S3 API's smallest part but the last
    writer = MultipartWriter(storage.s3, parse_location("s3://data/big.txt"), "text/plain", part)
    chunks = [bytes([65 + i]) * (MIB + 17) for i in range(11)]
    for chunk in chunks:
        writer.write(chunk)
    assert s3.list_multipart_uploads(Bucket="data").get("Uploads")  # parts went out already
    with pytest.raises(Exception, match="Not Found"):
        s3.head_object(Bucket="data", Key="big.txt")  # nothing visible before commit
    writer.commit()
    assert s3.get_object(Bucket="data", Key="big.txt")["Body"].read() == b"".join(chunks)
    small = storage.open_writer(parse_location("s3://data/small.txt"))
    small.write(b"one")
    small.commit()  # a single PUT
    assert s3.get_object(Bucket="data", Key="small.txt")["Body"].read() == b"one"
    dropped = MultipartWriter(storage.s3, parse_location("s3://data/x.txt"), "", part)
    dropped.write(b"z" * part)
    dropped.abort()
    assert not s3.list_multipart_uploads(Bucket="data").get("Uploads")
    assert "Contents" not in s3.list_objects_v2(Bucket="data", Prefix="x.txt")


def test_local_writer_commit_and_abort(tmp_path: Path) -> None:
    storage = Storage()
    writer = storage.open_writer(parse_location(str(tmp_path / "a" / "r.txt")))
    writer.write(b"one ")
    writer.write(b"two")
    assert not (tmp_path / "a" / "r.txt").exists()
    writer.commit()
    assert (tmp_path / "a" / "r.txt").read_bytes() == b"one two"
    dropped = storage.open_writer(parse_location(str(tmp_path / "a" / "r.txt")))
    dropped.write(b"half")
    dropped.abort()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["r.txt"]
    assert (tmp_path / "a" / "r.txt").read_bytes() == b"one two"
    with pytest.raises(StorageError, match="cannot write"):
        storage.open_writer(parse_location("https://h.example/x"))
