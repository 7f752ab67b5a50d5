"""images/build.py without building anything: the names the operator and the chart use are
the names it builds, the router image fits the Deployment the operator generates, and its
cache key sees exactly what a Dockerfile can see (.dockerignore semantics)."""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from inferops.api.catalog import default_catalog
from inferops.resources.nginx import ROUTER_PORT, Backend, nginx_config
from inferops.resources.realtime import ROUTER_UID

REPO = Path(__file__).resolve().parents[2]


def _load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("inferops_images_build", REPO / "images/build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


build = _load_build()


def test_the_catalog_and_the_chart_name_the_images_build_py_makes() -> None:
    images = default_catalog().images
    assert images.router == build.IMAGES["router"].ref == "ghcr.io/inferops/inferops-router:0.1.0"
    assert images.inferops == build.IMAGES["inferops"].ref
    values = yaml.safe_load((REPO / "charts/inferops/values.yaml").read_text())
    assert values["catalog"]["images"]["router"] == build.IMAGES["router"].ref
    assert values["image"]["repository"] == build.IMAGES["inferops"].ref.rsplit(":", 1)[0]
    assert build.IMAGES["base"].ref == "docker.io/library/debian:bookworm-slim"
    assert build.IMAGES["pause"].ref == "ghcr.io/inferops/pause:0.1.0"


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_the_router_image_runs_the_generated_deployment_unchanged() -> None:
    steps = _instructions(REPO / "images/router/Dockerfile")
    keys = [k for k, _ in steps]
    assert ("FROM", "debian:bookworm-slim") in steps
    assert ("USER", f"{ROUTER_UID}:{ROUTER_UID}") in steps  # the pod's runAsUser/runAsGroup
    assert ("EXPOSE", str(ROUTER_PORT)) in steps
    # The Deployment passes `args: [nginx, -g, daemon off;, -c, ...]`: no ENTRYPOINT may
    # stand in front of them.
    assert "ENTRYPOINT" not in keys
    assert any("nginx-light" in arg for k, arg in steps if k == "RUN")
    # Writable paths of the generated config are all on the /tmp emptyDir.
    conf = nginx_config([Backend("v1", "127.0.0.1:8081", 100)])
    for line in conf.splitlines():
        if line.strip().startswith(("pid ", "client_body_temp_path", "proxy_temp_path")):
            assert " /tmp/" in line, line
    default_conf = (REPO / "images/router/nginx.conf").read_text()
    assert f"listen {ROUTER_PORT};" in default_conf and "pid /tmp/nginx.pid;" in default_conf


def test_the_operator_image_is_debian_python_non_root_and_pip_config_is_build_only() -> None:
    steps = _instructions(REPO / "Dockerfile")
    froms = [arg for k, arg in steps if k == "FROM"]
    assert froms == ["${BASE_IMAGE} AS python", "python AS build", "python"]
    assert ("ARG", "BASE_IMAGE=debian:bookworm-slim") in steps
    assert ("USER", "10001:10001") in steps
    assert ("ENTRYPOINT", '["inferops"]') in steps and ("CMD", '["operator"]') in steps
    # PIP_CONFIG_FILE is declared in the build stage only, without a default.
    build_stage = steps[steps.index(("FROM", "python AS build")) :]
    runtime = build_stage[build_stage.index(("FROM", "python")) :]
    assert ("ARG", "PIP_CONFIG_FILE") in build_stage
    assert all("PIP_CONFIG_FILE" not in arg for _, arg in runtime)
    assert build.BUILD_MOUNT == "/mnt"


def test_the_root_context_is_what_the_dockerfile_copies() -> None:
    files = build.context_files(REPO)
    assert {"pyproject.toml", "README.md", "operator/inferops/cli.py"} <= set(files)
    assert "examples/iris/model/model.json" in files
    allowed = ("operator/", "examples/iris/model/", "examples/image-stats/model/")
    for f in files:
        assert f in ("pyproject.toml", "README.md") or f.startswith(allowed), f
        assert "__pycache__" not in f and not f.endswith(".pyc") and ".egg-info" not in f


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("ignore", "visible"),
    [
        ("", {"a.txt", "d/b.txt", "d/e/c.pyc", ".dockerignore"}),
        ("*\n!d/\n", {"d/b.txt", "d/e/c.pyc"}),
        ("*\n!d/\n**/*.pyc\n", {"d/b.txt"}),
        ("d\n!d/e/c.pyc\n", {"a.txt", "d/e/c.pyc", ".dockerignore"}),
        ("**/e\n", {"a.txt", "d/b.txt", ".dockerignore"}),
        ("/a.txt\n# comment\n.dockerignore\n", {"d/b.txt", "d/e/c.pyc"}),
        ("d/*.txt\n[ab].txt\n", {"d/e/c.pyc", ".dockerignore"}),
        ("*\n!d\nd/e\n", {"d/b.txt"}),
    ],
)
def test_dockerignore_semantics(tmp_path: Path, ignore: str, visible: set[str]) -> None:
    _tree(tmp_path, {"a.txt": "a", "d/b.txt": "b", "d/e/c.pyc": "c"})
    if ignore:
        (tmp_path / ".dockerignore").write_text(ignore)
    else:
        (tmp_path / ".dockerignore").write_text("")
    assert set(build.context_files(tmp_path)) == visible


def test_the_cache_key_follows_exactly_the_inputs(tmp_path: Path) -> None:
    _tree(tmp_path, {".dockerignore": "*\n!src/\n", "src/app.py": "1", "notes.md": "n"})
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:bookworm-slim\nCOPY src /src\n")
    image = build.Image("t", "example.com/t:1", dockerfile=dockerfile, context=tmp_path, base="b")
    key = build.input_key(image, "base-1", [])
    assert build.input_key(image, "base-1", []) == key
    (tmp_path / "notes.md").write_text("ignored change")
    assert build.input_key(image, "base-1", []) == key
    assert build.input_key(image, "base-2", []) != key  # a new base image
    (tmp_path / "src/app.py").write_text("2")
    changed = build.input_key(image, "base-1", [])
    assert changed != key
    os.chmod(tmp_path / "src/app.py", stat.S_IRWXU)
    assert build.input_key(image, "base-1", []) != changed  # the executable bit
    dockerfile.write_text("FROM debian:bookworm-slim\nCOPY src /app\n")
    assert build.input_key(image, "base-1", []) not in (key, changed)


def test_the_debian_mirror_comes_from_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\n# a snapshot comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n"
    )
    assert build.debian_mirrors(tmp_path) == (
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    )
    (tmp_path / "sources.list.d/debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert build.debian_mirrors(tmp_path) == ("http://old.example/debian", None)
    (tmp_path / "sources.list").write_text("")
    with pytest.raises(RuntimeError, match="no apt source"):
        build.debian_mirrors(tmp_path)


def test_the_build_mount_carries_the_ca_bundle_and_no_host_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_CERT", str(ca))
    monkeypatch.setenv("PIP_INDEX_URL", "https://pypi.example/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")  # a host path: must not be passed on
    build.write_build_mount(tmp_path / "mount")
    conf = (tmp_path / "mount/pip.conf").read_text()
    assert "cert = /mnt/ca.crt" in conf
    assert "index-url = https://pypi.example/simple" in conf
    assert "/opt/wheels" not in conf and str(tmp_path) not in conf
    assert (tmp_path / "mount/ca.crt").read_text() == ca.read_text()


def test_import_names_each_image_by_its_reference(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    ctr = tmp_path / "ctr"
    ctr.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'case "$*" in *" ls --quiet") '
        "printf 'ghcr.io/inferops/pause:0.1.0\\ndocker.io/library/debian:bookworm-slim\\n';; esac\n"
    )
    ctr.chmod(0o755)
    archives = {
        "ghcr.io/inferops/pause:0.1.0": tmp_path / "pause.tar",
        "docker.io/library/debian:bookworm-slim": tmp_path / "debian.tar",
    }
    assert build.import_images(archives, "/run/x.sock", ctr=str(ctr)) == list(archives)
    lines = calls.read_text().splitlines()
    prefix = "--address /run/x.sock --namespace k8s.io images import --base-name"
    assert lines[0] == f"{prefix} ghcr.io/inferops/pause {tmp_path}/pause.tar"
    assert lines[1] == f"{prefix} docker.io/library/debian {tmp_path}/debian.tar"
    with pytest.raises(RuntimeError, match="inferops-router"):
        build.import_images(
            {"ghcr.io/inferops/inferops-router:0.1.0": tmp_path / "r.tar"},
            "/run/x.sock",
            ctr=str(ctr),
        )


def test_unknown_names_are_refused() -> None:
    assert [i.name for i in build.resolve(["pause", "ghcr.io/inferops/inferops:0.1.0"])] == [
        "inferops",
        "pause",
    ]
    with pytest.raises(ValueError, match="unknown image"):
        build.resolve(["nginx"])
