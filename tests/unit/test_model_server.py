"""The reference model server honours the application contract (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from inferops.runtime.model_server import build_app
from inferops.runtime.models import ModelError, load_model
from tests.s3server import free_port, wait_until_serving

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "examples" / "iris" / "model"
IMAGES = REPO / "examples" / "image-stats" / "model"
SEED_BODY = {
    "data": {"req_data": [{"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2}]}
}


def with_client(
    model: Path,
    test: Callable[[TestClient[Any, Any]], Awaitable[None]],
    max_body: int = 16 * 1024 * 1024,
) -> None:
    async def run() -> None:
        async with TestClient(TestServer(build_app(model, max_body))) as client:
            await test(client)

    asyncio.run(run())


def png(width: int = 4, height: int = 3, value: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), value).save(out, format="PNG")
    return out.getvalue()


def form(field: str, content: bytes, filename: str = "a.png") -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field(field, content, filename=filename, content_type="image/png")
    return data


def test_health() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.get("/health")
        assert response.status == 200
        assert await response.json() == {"status": "ok"}

    with_client(IRIS, check)


def test_iris_answers_the_seed_request_body() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/", json=SEED_BODY)
        assert response.status == 200
        result = (await response.json())["resp_data"]
        assert [r["predictresult"] for r in result] == ["setosa"]
        assert abs(sum(result[0]["scores"].values()) - 1) < 1e-3

    with_client(IRIS, check)


def test_iris_predicts_one_result_per_item_in_order() -> None:
    rows = [(5.1, 3.5, 1.4, 0.2), (5.9, 3.0, 4.2, 1.5), (6.7, 3.0, 5.2, 2.3)]
    body = {
        "data": {
            "req_data": [
                dict(zip(("input_1", "input_2", "input_3", "input_4"), r, strict=True))
                for r in rows
            ]
        }
    }

    async def check(client: TestClient[Any, Any]) -> None:
        result = (await (await client.post("/", json=body)).json())["resp_data"]
        assert [r["predictresult"] for r in result] == ["setosa", "versicolor", "virginica"]

    with_client(IRIS, check)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b"[1, 2]", "req_data"),
        (b'{"data": {"req_data": []}}', "at least one item"),
        (b'{"data": {"req_data": [1]}}', "must be an object"),
        (b'{"data": {"req_data": [{"input_1": "a"}]}}', "input_1 must be a number"),
        (b'{"data": {"req_data": [{"input_1": 1, "input_2": 1, "input_3": 1}]}}', "input_4"),
        (
            b'{"data": {"req_data": [{"input_1": true, "input_2": 1, "input_3": 1, "input_4": 1}]}}',
            "input_1 must be a number",
        ),
    ],
)
def test_wrong_shapes_get_400_with_a_message(body: bytes, fragment: str) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/", data=body, headers={"Content-Type": "application/json"})
        assert response.status == 400
        assert fragment in (await response.json())["error"]

    with_client(IRIS, check)


def test_oversize_body_is_refused_with_413() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post(
            "/", data=b"x" * 5000, headers={"Content-Type": "application/json"}
        )
        assert response.status == 413
        assert "too large" in (await response.json())["error"]

    with_client(IRIS, check, max_body=1024)


def test_unknown_path_and_method() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        assert (await client.post("/nope", json=SEED_BODY)).status == 404
        assert (await client.get("/")).status == 405

    with_client(IRIS, check)


def test_file_input_image_statistics() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/", data=form("images", png(4, 3, 200), "x.png"))
        assert response.status == 200
        assert await response.json() == {
            "filename": "x.png",
            "format": "PNG",
            "mode": "L",
            "width": 4,
            "height": 3,
            "mean": 200.0,
        }

    with_client(IMAGES, check)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: form("images", b"not an image"), "not a readable image"),
        (lambda: form("other", png()), "no form field 'images'"),
        (lambda: b'{"a": 1}', "multipart/form-data"),
    ],
)
def test_file_input_errors_get_400(make: Callable[[], Any], fragment: str) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        response = await client.post("/", data=make())
        assert response.status == 400
        assert fragment in (await response.json())["error"]

    with_client(IMAGES, check)


def test_concurrent_file_requests_do_not_block_health() -> None:
    big = png(1500, 1500, 10)

    async def check(client: TestClient[Any, Any]) -> None:
        posts = [asyncio.create_task(client.post("/", data=form("images", big))) for _ in range(8)]
        health = await client.get("/health")
        assert health.status == 200
        responses = await asyncio.gather(*posts)
        assert all(r.status == 200 for r in responses)
        assert [(await r.json())["mean"] for r in responses] == [10.0] * 8

    with_client(IMAGES, check)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "cannot read"),
        ({"model.json": "{"}, "invalid JSON"),
        ({"model.json": "[" * 5000}, "invalid JSON: nested deeper than 100 levels"),
        ({"model.json": '{"type": ' + "9" * 5000 + "}"}, "invalid JSON: a number has more"),
        ({"model.json": '{"type": "gbm"}'}, "unknown model type"),
        (
            {
                "model.json": '{"type": "linear-softmax", "features": ["a"], "classes": ["x"], '
                '"coef": [[1, 2]], "intercept": [0]}'
            },
            "classes x features",
        ),
    ],
)
def test_bad_model_directories(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ModelError, match=message):
        load_model(tmp_path)


def test_iris_artifact_matches_the_training_script(tmp_path: Path) -> None:
    """The committed model.json is what examples/iris/train.py produces, and it is good."""
    out = tmp_path / "model.json"
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "iris" / "train.py"), "--output", str(out)],
        check=True,
        capture_output=True,
    )
    retrained = json.loads(out.read_text())
    committed = json.loads((IRIS / "model.json").read_text())
    assert retrained["classes"] == committed["classes"]
    assert retrained["trainingAccuracy"] >= 0.95
    for new, old in zip(retrained["coef"], committed["coef"], strict=True):
        assert all(abs(a - b) < 1e-3 for a, b in zip(new, old, strict=True))


def test_cli_serves_the_iris_example() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inferops.cli",
            "model-server",
            "--model",
            str(IRIS),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/health", process, 20, "the model server")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=json.dumps(SEED_BODY).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["resp_data"][0]["predictresult"] == "setosa"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_reports_a_bad_model_dir_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inferops.cli", "model-server", "--model", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "cannot read" in result.stderr


def test_fail_percent_answers_that_share_500_and_never_the_health_check() -> None:
    async def run() -> tuple[int, set[int]]:
        app = build_app(IRIS, fail_percent=20)
        async with TestClient(TestServer(app)) as client:
            codes = []
            for _ in range(500):
                async with client.post("/", json=SEED_BODY) as response:
                    codes.append(response.status)
                    if response.status == 500:
                        body = await response.json()
                        assert body == {"error": "failing on purpose (--fail-percent 20)"}
            health = set()
            for _ in range(50):
                async with client.get("/health") as response:
                    health.add(response.status)
            return codes.count(500), health

    failed, health = asyncio.run(run())
    assert 50 <= failed <= 150  # 20% of 500, +-5 standard deviations
    assert health == {200}


def test_fail_percent_out_of_range_is_refused(capsys: Any) -> None:
    from inferops.cli import main

    assert main(["model-server", "--model", str(IRIS), "--fail-percent", "120"]) != 0
    assert "--fail-percent must be between 0 and 100, got 120" in capsys.readouterr().err
