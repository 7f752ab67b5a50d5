"""Fuzzing every reader of untrusted input: no uncaught exception, whatever the input.

Targets: the JSON and YAML readers (inferops.contract.untrusted), the validation entry
point (`validate_object`) and `inferops validate` / `render` on arbitrary YAML text, the
batch worker's manifest reader and CSV reader, and the model server's request parsing
(in process, and over HTTP against the real aiohttp server).

Inputs are drawn from grammars of each format (random JSON and YAML text, real documents
with random edits, hostile shapes: deep nesting, long numbers, aliases, tags, surrogates,
compression) rather than from bytes alone, so most examples get past the first character.

Each target runs `FUZZ_EXAMPLES` examples (default 100, so the suite stays well under a
minute in CI); a long run, e.g. `FUZZ_EXAMPLES=20000`, scales every target.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import http.client
import io
import itertools
import json
import math
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferops.cli import main
from inferops.contract.untrusted import UntrustedInputError, load_json, load_yaml_documents
from inferops.runtime.model_server import answer_json, build_app, stream_replies
from inferops.runtime.models import load_model
from inferops.storage import Storage
from inferops.validation import ValidationContext, known_application, validate_object
from inferops.worker.client import Reply
from inferops.worker.csv_rows import json_line
from inferops.worker.runner import run_local
from inferops.worker.sources import iter_shard, split_lines
from tests.unit.rules_table import APPS, ROWS, bs, rts
from tests.worker_support import SEED_SCHEMA, application, batch_service, manifest_lines, serve

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "examples" / "iris" / "model"
IMAGES = REPO / "examples" / "image-stats" / "model"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ left in the tree; failures print their example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- grammars ------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=40,
)


@st.composite
def nested(draw: st.DrawFn) -> Any:
    """A value nested around the readers' bound (100 levels)."""
    value: Any = draw(scalars)
    for _ in range(draw(st.integers(0, 140))):
        value = [value] if draw(st.booleans()) else {draw(st.text(max_size=3)): value}
    return value


values = st.one_of(json_values, nested())


@st.composite
def edited(draw: st.DrawFn, bases: list[str], snippets: st.SearchStrategy[str]) -> str:
    """A base text with a few random cuts and insertions."""
    text = draw(st.sampled_from(bases))
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 20)))
        text = text[:start] + draw(snippets) + text[end:]
    return text


JSON_SNIPPETS = st.one_of(
    st.sampled_from(
        [
            "[",
            "]",
            "{",
            "}",
            ",",
            ":",
            '"',
            "\\",
            "\\u",
            "\\ud800",
            "\\udc00",
            "\\ud83d\\ude00",
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "-0",
            "0.0e-999",
            "9" * 300,
            "9" * 5000,
            "[" * 120,
            "[" * 1000,  # past Python's recursion limit, for readers not bounded
            '{"a":' * 1000,
            '{"a":' * 120,
            "null",
            "true",
            "\x00",
            "\ufeff",
            "\n",
            " ",
        ]
    ),
    st.text(max_size=6),
)
SEED_BODY = {
    "data": {"req_data": [{"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2}]}
}
JSON_BASES = [
    json.dumps(SEED_BODY),
    json.dumps({"source": "s3://bucket/in/1.jpg"}),
    json.dumps({"data": {"req_data": [SEED_BODY["data"]["req_data"][0]] * 3}}),
    '[1, 2.5, -3e10, "x", null, true, {"a": []}]',
]


def _json_text(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


# Whole documents past every bound, so each target meets them often (a snippet among
# others rarely starts a document).
HOSTILE_JSON = [
    "[" * 1000 + "]" * 1000,
    '{"a":' * 1000 + "1" + "}" * 1000,
    "[" * 1000 + "\n" + "]" * 1000,
    "[\n" + "9" * 5000 + "]",
    '{"x":\n NaN}',
    '["\\ud800"]',
    "[1e400]",
]
json_texts = st.one_of(
    st.sampled_from(HOSTILE_JSON),
    values.map(_json_text),
    edited(JSON_BASES, JSON_SNIPPETS),
    st.lists(JSON_SNIPPETS, max_size=30).map("".join),
)
json_bytes = st.one_of(
    json_texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)

YAML_SNIPPETS = st.one_of(
    st.sampled_from(
        [
            "\n",
            "\n  ",
            "- ",
            ": ",
            "? ",
            "[",
            "]",
            "{",
            "}",
            ",",
            "&a ",
            "*a",
            "&b ",
            "*b",
            "<<: *a",
            "!!int ",
            "!!float ",
            "!!bool ",
            "!!str ",
            "!!timestamp ",
            "!!binary ",
            "!!null ",
            "!!set ",
            "!!omap ",
            "!!pairs ",
            "!!python/object:os.system ",
            "!x ",
            "|\n  ",
            ">\n  ",
            "'",
            '"',
            '"\\ud800"',
            '"\\x00"',
            "---\n",
            "...\n",
            "%YAML 1.1\n",
            "%TAG ! tag:x,2000:\n",
            "#",
            "0x" + "f" * 300,
            "1:" * 200,
            "9" * 5000,
            "2001-02-30",
            "2001-12-14t21:59:43.10-05:00",
            ".inf",
            ".nan",
            "~",
            "yes",
            "0o777",
            "\t",
            "\ufeff",
            "[" * 120,
            "- " * 120,
            "a: &a [*a]\n",
            "kind: [RealTimeService]\n",
        ]
    ),
    st.text(max_size=6),
)
EXAMPLE_TEXTS = [p.read_text() for p in sorted((REPO / "examples").glob("*.yaml"))]
OBJECTS = [r.obj for r in ROWS] + [rts(), bs()] + APPS
for _text in EXAMPLE_TEXTS:
    OBJECTS += [d for d in yaml.safe_load_all(_text) if isinstance(d, dict)]


@st.composite
def mutated_objects(draw: st.DrawFn) -> Any:
    """A real object (examples, the rules table) with a few fields replaced by anything."""
    obj = copy.deepcopy(draw(st.sampled_from(OBJECTS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(obj))
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = draw(values)
    return obj


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _yaml_dump(value: Any) -> str:
    try:
        return yaml.safe_dump_all([value] if not isinstance(value, list) else value)
    except (yaml.YAMLError, RecursionError, ValueError):
        return str(value)


yaml_texts = st.one_of(
    edited(EXAMPLE_TEXTS, YAML_SNIPPETS),
    mutated_objects().map(_yaml_dump),
    values.map(_yaml_dump),
    st.lists(YAML_SNIPPETS, max_size=30).map("".join),
)


def _same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (so a value can be compared with itself re-read)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(type(a) is type(b) and a == b)


def _one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "\r" not in message


# ---- the readers ---------------------------------------------------------------------------


@FUZZ
@given(json_bytes)
def test_json_reader(data: bytes) -> None:
    try:
        value = load_json(data)
    except UntrustedInputError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    if refusal:
        assert _one_line(refusal)
        return
    assert _same(value, json.loads(data))  # what it accepts, it reads as json does


@FUZZ
@given(yaml_texts)
def test_yaml_reader(text: str) -> None:
    try:
        documents = load_yaml_documents(text)
    except UntrustedInputError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    if refusal:
        assert _one_line(refusal)
        return
    assert _same(documents, list(yaml.safe_load_all(text)))  # what it accepts, yaml reads so


# ---- validation ----------------------------------------------------------------------------

CTX = ValidationContext(
    applications={
        ("default", a["metadata"]["name"]): k for a in APPS if (k := known_application(a))
    }
)


@FUZZ
@given(st.one_of(mutated_objects(), values), st.booleans())
def test_validate_object(obj: Any, update: bool) -> None:
    old = copy.deepcopy(obj) if update and isinstance(obj, dict) else None
    ctx = ValidationContext(applications=CTX.applications, old=old)
    for problem in validate_object(obj, ctx):
        assert problem.path and problem.message, problem


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@FUZZ
@given(text=yaml_texts)
def test_validate_and_render_commands(workdir: Path, text: str) -> None:
    path = workdir / "manifest.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, out, err = _run_cli("validate", str(path))
    assert code in (0, 1, 2)
    if code == 2:
        assert out == "" and _one_line(err.strip()) and err.startswith("inferops: ")
    elif code == 1:
        assert out and all(line.count(": ") >= 2 for line in out.splitlines())
    code, out, err = _run_cli("render", str(path))
    assert code in (0, 1, 2)


# ---- the batch worker's readers ------------------------------------------------------------

manifest_entries = st.one_of(
    st.builds(lambda s: json.dumps({"source": s}), st.text(max_size=40)),
    st.sampled_from(
        [
            '{"source": "s3://b/k.jpg"}',
            '{"source": "obs://b/a/../k"}',
            '{"source": "/etc/passwd"}',
            '{"source": "https://127.0.0.1/x"}',
            '{"source": "file:///dev/zero"}',
            '{"source": ""}',
            '{"source": 1}',
            '{"source": "\\ud800"}',
            '{"source": "a\\u0000b"}',
        ]
    ),
    json_texts,
)
manifests = st.one_of(
    st.lists(manifest_entries, max_size=8).map(
        lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")
    ),
    st.binary(max_size=300),
)


@FUZZ
@given(data=manifests, cut=st.integers(1, 64))
def test_manifest_reader(workdir: Path, data: bytes, cut: int) -> None:
    # split_lines gives the same lines however the stream is chunked.
    chunks = [data[i : i + cut] for i in range(0, len(data), cut)]
    assert list(split_lines(chunks, 1 << 20)) == list(split_lines([data], 1 << 20))
    manifest = workdir / "in.manifest"
    manifest.write_bytes(data)
    for source in iter_shard(Storage(), str(manifest), 0, 1):
        assert (source.location is None) == (source.error is not None)
        if source.error is not None:
            assert _one_line(source.error), source.error


TYPED_SCHEMA: dict[str, Any] = {
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
                            "properties": {
                                "input_1": {"type": "number"},
                                "input_2": {"type": "integer"},
                                "input_3": {"type": "boolean"},
                                "input_4": {"type": "string"},
                            },
                        }
                    ],
                }
            },
        }
    },
}
csv_cells = st.one_of(
    st.sampled_from(
        [
            "5.1",
            "-0",
            "1e308",
            "1e999",
            "nan",
            "inf",
            "-inf",
            "1_000",
            "0x10",
            "true",
            "False",
            "",
            " 1 ",
            "9" * 5000,
            '"',
            '""',
            "a,b",
            "\r",
            "\x00",
            "\ufeff1",
            "\u2028",
        ]
    ),
    st.text(max_size=8),
)
csv_files = st.one_of(
    st.lists(st.lists(csv_cells, max_size=6), max_size=8).map(
        lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8", "surrogatepass")
    ),
    st.text(alphabet=',"\n\r 0123456789.-eE\x00a\u00e9', max_size=200).map(str.encode),
    st.binary(max_size=100),
)
_RUNS = itertools.count()


@pytest.fixture(scope="module")
def iris_server() -> Iterator[str]:
    with serve(build_app(IRIS)) as url:
        yield url


@FUZZ
@given(data=csv_files, typed=st.booleans())
def test_csv_reader(workdir: Path, iris_server: str, data: bytes, typed: bool) -> None:
    """A CSV file through the real worker and the real iris model server: one manifest
    line, SUCCESSFUL or FAILED with a one-line message, and JSON result lines."""
    run = workdir / f"csv-{next(_RUNS)}"
    (run / "in").mkdir(parents=True)
    (run / "in" / "rows.csv").write_bytes(data)
    service = batch_service(str(run / "in"), str(run / "out"))
    app = application(TYPED_SCHEMA if typed else SEED_SCHEMA)
    [summary] = run_local(service, app, iris_server, "T", retries=0, request_timeout_seconds=10.0)
    assert summary.total == 1
    [line] = manifest_lines(run / "out", "T")
    if line["result"] == "FAILED":
        assert _one_line(line["error_message"]), line
    results = run / "out" / "infer-result-T" / "rows.csv_result.txt"
    if results.exists():
        for result in results.read_bytes().splitlines():
            json.loads(result)


@FUZZ
@given(
    json_bytes, st.sampled_from(["application/json", "text/plain", "application/x+json; a=b", ""])
)
def test_csv_result_lines(body: bytes, content_type: str) -> None:
    line = json_line(Reply(body, content_type))
    assert b"\n" not in line


# ---- the model server ----------------------------------------------------------------------

MODELS = {"iris": load_model(IRIS), "images": load_model(IMAGES)}
CODINGS = ["", "identity", "gzip", "x-gzip", "deflate", "br", "zstd", "gzip, gzip", " GZIP "]
CHARSETS = [None, "utf-8", "latin-1", "utf-16", "idna", "rot13", "hex", "no-such", "utf-7"]


def _encode(body: bytes, coding: str, garble: int) -> bytes:
    name = coding.strip().lower()
    if name in ("gzip", "x-gzip"):
        body = gzip.compress(body)
    elif name == "deflate":
        body = zlib.compress(body)
    if garble and body:  # flip a byte, or cut the tail
        position = garble % len(body)
        body = body[:position] + bytes([body[position] ^ 0xFF]) + body[position + 1 :]
    return body


@FUZZ
@given(
    json_bytes,
    st.sampled_from(sorted(MODELS)),
    st.sampled_from(CODINGS),
    st.sampled_from(CHARSETS),
    st.sampled_from([64, 4096, 1 << 20]),
    st.integers(0, 3) | st.integers(0, 10_000),
)
def test_model_server_request_parsing(
    body: bytes, model: str, coding: str, charset: str | None, max_body: int, garble: int
) -> None:
    raw = _encode(body, coding, garble if garble > 3 else 0)
    status, answer = answer_json(MODELS[model], raw, coding, charset, max_body)
    assert status in (200, 400, 413, 415)
    decoded = json.loads(answer)
    assert status == 200 or _one_line(decoded["error"])
    replies = stream_replies(MODELS[model], body.decode("utf-8", "replace"))
    json.dumps(replies, allow_nan=False)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """The real model servers (iris: JSON, image-stats: multipart) on loopback."""
    with serve(build_app(IRIS, 4096)) as iris, serve(build_app(IMAGES, 4096)) as images:
        yield {"iris": iris, "images": images}


def _multipart(boundary: str, parts: list[tuple[str, bytes]], tail: bytes) -> bytes:
    out = b""
    for headers, content in parts:
        out += (
            f"--{boundary}\r\n{headers}\r\n\r\n".encode("utf-8", "surrogatepass")
            + content
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode("utf-8", "surrogatepass") + tail


part_headers = st.one_of(
    st.sampled_from(
        [
            'Content-Disposition: form-data; name="images"; filename="a.png"',
            'Content-Disposition: form-data; name="images"',
            'Content-Disposition: form-data; name="other"; filename="b"',
            "Content-Disposition: form-data",
            'Content-Disposition: form-data; name="images"\r\nContent-Transfer-Encoding: base64',
            'Content-Disposition: form-data; name="images"\r\nContent-Encoding: gzip',
            'Content-Disposition: form-data; name="images"\r\nContent-Length: x',
            "X: " + "y" * 9000,
        ]
    ),
    st.text(max_size=40),
)
boundaries = st.one_of(st.sampled_from(["x", "a" * 71, "", "\u00e9", '"q"']), st.text(max_size=8))


@st.composite
def http_requests(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes]:
    coding = draw(st.sampled_from(CODINGS))
    if draw(st.booleans()):
        boundary = draw(boundaries)
        parts = draw(st.lists(st.tuples(part_headers, st.binary(max_size=300)), max_size=3))
        body = _multipart(boundary, parts, draw(st.binary(max_size=20)))
        params = draw(st.sampled_from(["; boundary={b}", "", '; boundary="{b}"', "; charset=x"]))
        content_type = "multipart/form-data" + params.format(b=boundary)
        model = "images"
    else:
        body = draw(json_bytes)
        content_type = draw(
            st.sampled_from(["application/json", "application/json; charset=idna", "text/plain"])
        )
        model = draw(st.sampled_from(["iris", "images"]))
    headers = {"Content-Type": content_type}
    if coding:
        headers["Content-Encoding"] = coding
    return (
        model,
        headers,
        _encode(body, coding, draw(st.integers(0, 5_000)) if draw(st.booleans()) else 0),
    )


@FUZZ
@given(request=http_requests())
def test_model_server_over_http(
    servers: dict[str, str], request: tuple[str, dict[str, str], bytes]
) -> None:
    model, headers, body = request
    host, port = servers[model].removeprefix("http://").split(":")
    # Header values go out as their UTF-8 bytes (http.client sends latin-1 text).
    headers = {k: v.encode("utf-8", "surrogatepass").decode("latin-1") for k, v in headers.items()}
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        try:
            connection.request("POST", "/", body=body, headers=headers)
        except ValueError:  # a header value HTTP cannot carry (a line break): not sendable
            return
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    assert response.status in (200, 400, 413, 415), (response.status, answer[:300])
    if response.getheader("Content-Type", "").startswith("application/json"):
        decoded = json.loads(answer)
        assert response.status == 200 or _one_line(decoded["error"])
