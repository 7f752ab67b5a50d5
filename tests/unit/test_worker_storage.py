"""Folder and manifest inputs on a real S3-API server, local files and an HTTP file host."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from inferops.runtime.model_server import build_app
from inferops.worker.runner import run_local
from tests.worker_support import (
    FILE_SCHEMA,
    IMAGES_MODEL,
    IRIS_MODEL,
    SEED_SCHEMA,
    application,
    batch_service,
    serve,
)


def png(width: int, height: int, value: int = 100) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), value).save(out, format="PNG")
    return out.getvalue()


def s3_lines(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"])
    manifests = [k for k in keys if k.endswith(".manifest")]
    text = "".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in manifests)
    return [json.loads(line) for line in text.splitlines()]


def s3_text(s3: Any, bucket: str, key: str) -> str:
    return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def test_s3_folder_of_csv_files(s3: Any) -> None:
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"5.1,3.5,1.4,0.2\n")
    s3.put_object(Bucket="data", Key="in/sub/a.csv", Body=b"6.7,3.0,5.2,2.3\n4.9,3.0,1.4,0.2\n")
    s3.put_object(Bucket="data", Key="in/b.csv", Body=b"")
    s3.put_object(Bucket="data", Key="elsewhere/c.csv", Body=b"1,2,3,4\n")
    service = batch_service("obs://data/in/", "obs://data/out", app="iris", computeNodes=2)
    with serve(build_app(IRIS_MODEL)) as url:
        summaries = run_local(service, application(SEED_SCHEMA, name="iris"), url, "f1")
    assert [s.to_dict() for s in summaries] == [
        {
            "total": 2,
            "succeeded": 2,
            "failed": 0,
            "manifests": ["obs://data/out/infer-result-f1.manifest"],
        },
        {
            "total": 1,
            "succeeded": 1,
            "failed": 0,
            "manifests": ["obs://data/out/infer-result-f1_1.manifest"],
        },
    ]
    lines = s3_lines(s3, "data", "out/")
    # Key order: in/a.csv, in/b.csv, in/sub/a.csv; worker 0 took positions 0 and 2.
    assert lines == [
        {
            "source": "obs://data/in/a.csv",
            "result": "SUCCESSFUL",
            "inference-loc": "obs://data/out/infer-result-f1/a.csv_result.txt",
        },
        {
            "source": "obs://data/in/sub/a.csv",
            "result": "SUCCESSFUL",
            "inference-loc": "obs://data/out/infer-result-f1/sub/a.csv_result.txt",
        },
        {
            "source": "obs://data/in/b.csv",
            "result": "SUCCESSFUL",
            "inference-loc": "obs://data/out/infer-result-f1/b.csv_result.txt",
        },
    ]
    nested = s3_text(s3, "data", "out/infer-result-f1/sub/a.csv_result.txt").splitlines()
    assert [json.loads(r)["resp_data"][0]["predictresult"] for r in nested] == [
        "virginica",
        "setosa",
    ]
    assert s3_text(s3, "data", "out/infer-result-f1/b.csv_result.txt") == ""


def test_manifest_of_s3_local_and_https_sources(s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="imgs/1.png", Body=png(4, 3))
    s3.put_object(Bucket="data", Key="other/1.png", Body=png(5, 5))
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "2.png").write_bytes(png(2, 2))
    (tmp_path / "local" / "3.png").write_bytes(png(3, 1))
    (tmp_path / "hosted").mkdir()
    (tmp_path / "hosted" / "1.png").write_bytes(png(7, 2))
    host = web.Application()
    host.router.add_static("/", tmp_path / "hosted")
    with serve(host) as files, serve(build_app(IMAGES_MODEL)) as model:
        # A pre-signed URL: the query string is kept in the manifest, not in the name.
        signed = f"{files}/1.png?AccessKeyId=AK&Expires=1550611914&Signature=wZB%3D"
        sources = [
            "obs://data/imgs/1.png",
            "s3://data/other/1.png",
            str(tmp_path / "local" / "2.png"),
            f"file://{tmp_path}/local/3.png",
            signed,
        ]
        manifest = "".join(json.dumps({"source": s}) + "\n" for s in sources)
        s3.put_object(Bucket="data", Key="list.manifest", Body=manifest.encode())
        service = batch_service("s3://data/list.manifest", "s3://data/out/", app="images")
        [summary] = run_local(
            service,
            application(FILE_SCHEMA, name="images"),
            model,
            "m1",
            allow_http_sources=True,
            allowed_networks=["127.0.0.0/8"],  # the file host is on loopback
        )
    assert summary.to_dict() == {
        "total": 5,
        "succeeded": 5,
        "failed": 0,
        "manifests": ["s3://data/out/infer-result-m1.manifest"],
    }
    lines = s3_lines(s3, "data", "out/")
    assert [line["source"] for line in lines] == sources
    # Later lines with a basename already used get their 0-based line number.
    names = ["1.png", "1.png_1", "2.png", "3.png", "1.png_4"]
    assert [line["inference-loc"] for line in lines] == [
        f"s3://data/out/infer-result-m1/{n}_result.txt" for n in names
    ]
    sizes = [json.loads(s3_text(s3, "data", f"out/infer-result-m1/{n}_result.txt")) for n in names]
    assert [(r["width"], r["height"]) for r in sizes] == [(4, 3), (5, 5), (2, 2), (3, 1), (7, 2)]


def test_local_manifest_to_local_output(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.csv").write_text("5.1,3.5,1.4,0.2\n")
    (tmp_path / "in.manifest").write_text(
        json.dumps({"source": str(tmp_path / "a" / "x.csv")})
        + "\n\n"
        + json.dumps({"source": f"file://{tmp_path}/a/x.csv", "extra": 1})
        + "\n"
    )
    service = batch_service(str(tmp_path / "in.manifest"), str(tmp_path / "out"), app="iris")
    with serve(build_app(IRIS_MODEL)) as url:
        [summary] = run_local(service, application(SEED_SCHEMA, name="iris"), url, "L")
    assert (summary.total, summary.succeeded) == (2, 2)
    lines = (tmp_path / "out" / "infer-result-L.manifest").read_text().splitlines()
    # The blank line is not a source, but it still counts as line 2 of the file.
    assert [json.loads(line)["inference-loc"] for line in lines] == [
        str(tmp_path / "out" / "infer-result-L" / "x.csv_result.txt"),
        f"{tmp_path}/out/infer-result-L/x.csv_2_result.txt",
    ]
