#!/usr/bin/env python3
"""Build the Inferops images without a Docker engine or a registry, once, and reuse them.

    python3 images/build.py [--cache-dir DIR] [--force] [--import-to SOCKET] [NAME...]

Images (NAME is the short name or the full reference):

- ``base``: ``docker.io/library/debian:bookworm-slim``, made by ``debootstrap --variant=minbase
  bookworm`` from the Debian mirror of the machine's apt sources, cleaned like Debian's slim
  image, and kept in buildah's storage under that name, so ``FROM debian:bookworm-slim``
  resolves locally with pulling disabled;
- ``inferops``: ``ghcr.io/inferops/inferops:<version>``, the repository's own ``Dockerfile``;
- ``router``: ``ghcr.io/inferops/inferops-router:<version>``, ``images/router/Dockerfile``
  (Debian's nginx-light, unprivileged);
- ``pause``: ``ghcr.io/inferops/pause:<version>``, ``images/pause/Dockerfile``: ``FROM
  scratch`` plus the static binary of ``images/pause/main.go``, which this script builds with
  the host's Go (``CGO_ENABLED=0 go build -trimpath``) into a staging build context first,
  since there is no Go base image to build it in.

Each image ends as an OCI archive (gzip layers) under ``<cache>/archives``, keyed by a
hash of its inputs: the Dockerfile, every file of the build context that the Dockerfile can
see (honouring ``.dockerignore``), the id of the base image and this script's recipe version.
Unchanged inputs rebuild nothing. The cache root is ``--cache-dir``, else
``$INFEROPS_IMAGE_CACHE``, else ``~/.cache/inferops/images``; buildah runs with its own
``--root``/``--runroot`` in it (overlay when the kernel allows it, else vfs), RUN steps use
chroot isolation (the host's network, no bridge, no firewall rules), and a file lock keeps
two concurrent runs apart.

pip inside a build must trust the machine's CA bundle, which a build container does not
inherit: the bundle and a generated ``pip.conf`` are bind-mounted (``buildah bud --volume``)
on ``/mnt`` during RUN steps only, and ``--build-arg PIP_CONFIG_FILE=/mnt/pip.conf`` (an ARG of
the Dockerfile's build stage) points pip at them. ``/mnt`` exists, empty, in Debian images, so
the mount leaves no mount point behind (buildah 1.28 keeps the folders it creates for
volumes); Docker users leave the argument unset, and nothing of the host reaches an image.

``import_images(archives, containerd_address)`` loads archives into a containerd
(``ctr images import``) under exactly their references.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Bump when a change to this script changes what it produces: every image is rebuilt, and
#: buildah's storage (with its layer cache, which knows nothing of this script) starts empty.
RECIPE_VERSION = "2"

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO_ROOT / "images"
DEBIAN_SUITE = "bookworm"
BUILD_MOUNT = "/mnt"  # where the CA bundle and pip.conf appear during RUN steps (exists, empty)
DEFAULT_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
IMAGE_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _project_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


VERSION = _project_version()


@dataclass(frozen=True)
class Image:
    """One image: its short name, its reference and how it is built."""

    name: str
    ref: str
    dockerfile: Path | None = None  # None: the debootstrap base
    context: Path | None = None  # the build context (None: a staging folder, see `go_binary`)
    base: str | None = None  # short name of the image it is built FROM, if one of ours
    go_binary: str | None = None  # built from `sources` with Go into the staging context
    sources: Path | None = None  # folder whose every file is an input (when context is None)
    pip: bool = False  # RUN steps need pip's CA bundle and configuration


IMAGES: dict[str, Image] = {
    image.name: image
    for image in (
        Image("base", f"docker.io/library/debian:{DEBIAN_SUITE}-slim"),
        Image(
            "inferops",
            f"ghcr.io/inferops/inferops:{VERSION}",
            dockerfile=REPO_ROOT / "Dockerfile",
            context=REPO_ROOT,
            base="base",
            pip=True,
        ),
        Image(
            "router",
            f"ghcr.io/inferops/inferops-router:{VERSION}",
            dockerfile=IMAGES_DIR / "router" / "Dockerfile",
            context=IMAGES_DIR / "router",
            base="base",
        ),
        Image(
            "pause",
            f"ghcr.io/inferops/pause:{VERSION}",
            dockerfile=IMAGES_DIR / "pause" / "Dockerfile",
            go_binary="pause",
            sources=IMAGES_DIR / "pause",
        ),
    )
}


def log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    env = os.environ.get("INFEROPS_IMAGE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "inferops" / "images"


def resolve(names: Iterable[str] | None) -> list[Image]:
    """Images by short name or full reference, in build order (bases first)."""
    if names is None:
        return list(IMAGES.values())
    by_ref = {image.ref: image for image in IMAGES.values()}
    wanted: set[str] = set()
    for name in names:
        image = IMAGES.get(name) or by_ref.get(name)
        if image is None:
            known = ", ".join(f"{i.name} ({i.ref})" for i in IMAGES.values())
            raise ValueError(f"unknown image {name!r}; known: {known}")
        wanted.add(image.name)
    return [image for image in IMAGES.values() if image.name in wanted]


# ---- inputs: .dockerignore and the hash of a build context --------------------------------


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    parts: tuple[str, ...]
    negated: bool


def _glob_regex(pattern: str) -> str:
    """moby/patternmatcher semantics: `*` and `?` stay within one path element, `**` spans
    any number of them."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            if body.startswith(("!", "^")):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def read_dockerignore(context: Path) -> list[_Pattern]:
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:].strip()
        line = os.path.normpath(line).lstrip("/")
        if line in ("", "."):
            continue
        regex = re.compile(_glob_regex(line) + r"\Z")
        patterns.append(_Pattern(regex, tuple(line.split("/")), negated))
    return patterns


def _excluded(rel: str, patterns: Sequence[_Pattern]) -> bool:
    """Whether the context path `rel` is excluded: the last pattern matching it or one of
    its parent folders decides."""
    parts = rel.split("/")
    parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    excluded = False
    for p in patterns:
        if p.regex.match(rel) or any(p.regex.match(parent) for parent in parents):
            excluded = not p.negated
    return excluded


def _may_reinclude_below(rel: str, patterns: Sequence[_Pattern]) -> bool:
    """Whether an exception (`!pattern`) could bring back something below excluded `rel`."""
    parts = rel.split("/")
    for p in patterns:
        if not p.negated:
            continue
        if any("**" in part for part in p.parts):
            return True
        if len(p.parts) > len(parts) and all(
            re.fullmatch(_glob_regex(pp), part) for pp, part in zip(p.parts, parts, strict=False)
        ):
            return True
    return False


def context_files(context: Path) -> list[str]:
    """The files of a build context that COPY/ADD can see, relative, sorted."""
    patterns = read_dockerignore(context)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(context):
        rel_dir = os.path.relpath(dirpath, context)
        prefix = "" if rel_dir == "." else rel_dir + "/"
        kept = []
        for d in sorted(dirnames):
            rel = prefix + d
            if (context / rel).is_symlink():
                filenames.append(d)
            elif not _excluded(rel, patterns) or _may_reinclude_below(rel, patterns):
                kept.append(d)
        dirnames[:] = kept
        found.extend(prefix + f for f in filenames if not _excluded(prefix + f, patterns))
    return sorted(found)


def _hash_files(h: hashlib._Hash, root: Path, files: Iterable[str]) -> None:
    for rel in files:
        path = root / rel
        st = path.lstat()
        h.update(rel.encode() + b"\0")
        if stat.S_ISLNK(st.st_mode):
            h.update(b"link\0" + os.readlink(path).encode())
        else:
            h.update(b"x\0" if st.st_mode & 0o111 else b"f\0")
            with path.open("rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
        h.update(b"\0")


def _go_version() -> str:
    out = subprocess.run(
        ["go", "env", "GOVERSION", "GOOS", "GOARCH"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local"},
    )
    return " ".join(out.stdout.split())


def input_key(image: Image, base_id: str | None, mirrors: Sequence[str]) -> str:
    """The hash of everything an image is made from."""
    h = hashlib.sha256()
    h.update(f"recipe {RECIPE_VERSION}\0{image.ref}\0".encode())
    if image.dockerfile is None:  # the debootstrap base
        h.update(f"debootstrap minbase {DEBIAN_SUITE}\0".encode())
        h.update("\0".join(mirrors).encode())
        return h.hexdigest()
    h.update(b"dockerfile\0" + image.dockerfile.read_bytes() + b"\0")
    h.update(f"base {base_id}\0".encode())
    if image.context is not None:
        _hash_files(h, image.context, context_files(image.context))
    if image.sources is not None:
        files = sorted(
            str(p.relative_to(image.sources))
            for p in image.sources.rglob("*")
            if p.is_file() and p.name != image.go_binary
        )
        _hash_files(h, image.sources, files)
    if image.go_binary is not None:
        h.update(f"go {_go_version()}\0".encode())
    return h.hexdigest()


# ---- the machine's Debian mirror and pip settings ------------------------------------------


def _apt_entries(etc_apt: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(URIs, suites) of the machine's apt sources (deb822 and one-line formats)."""
    sources = etc_apt / "sources.list.d"
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            key = ""
            for line in stanza.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0] in " \t" and key:
                    fields[key] += " " + line.strip()
                    continue
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                yield fields.get("uris", "").split(), fields.get("suites", "").split()
    lists = [etc_apt / "sources.list"]
    if sources.is_dir():
        lists += sorted(sources.glob("*.list"))
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                yield [words[1]], [words[2]]


def debian_mirrors(etc_apt: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """The machine's Debian mirror for the suite, and its security mirror if it has one."""
    main = security = None
    for uris, suites in _apt_entries(etc_apt):
        if not uris:
            continue
        if main is None and DEBIAN_SUITE in suites:
            main = uris[0]
        if security is None and f"{DEBIAN_SUITE}-security" in suites:
            security = uris[0]
    if main is None:
        raise RuntimeError(f"no apt source for Debian {DEBIAN_SUITE} in {etc_apt}")
    return main, security


def _pip_settings() -> tuple[str | None, dict[str, str]]:
    """The CA bundle and index settings the host's pip uses (environment, then pip.conf)."""
    conf: dict[str, str] = {}
    for path in ("/etc/pip.conf", "/etc/xdg/pip/pip.conf", str(Path.home() / ".pip/pip.conf")):
        parser = configparser.ConfigParser()
        with contextlib.suppress(OSError, configparser.Error):
            parser.read(path)
            if parser.has_section("global"):
                conf.update(parser["global"])
    for key in ("cert", "index-url", "extra-index-url", "trusted-host", "timeout"):
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            conf[key] = env
    if "timeout" not in conf and os.environ.get("PIP_DEFAULT_TIMEOUT"):
        conf["timeout"] = os.environ["PIP_DEFAULT_TIMEOUT"]
    cert = conf.pop("cert", None)
    for candidate in (
        cert,
        os.environ.get("SSL_CERT_FILE"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        *DEFAULT_CA_BUNDLES,
    ):
        if candidate and Path(candidate).is_file():
            cert = candidate
            break
    keep = {k: v for k, v in conf.items() if k in ("index-url", "extra-index-url", "trusted-host")}
    if "timeout" in conf:
        keep["timeout"] = conf["timeout"]
    return cert, keep


def write_build_mount(folder: Path) -> None:
    """The build-time-only folder mounted at BUILD_MOUNT: the CA bundle and a pip.conf."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, settings = _pip_settings()
    lines = ["# Generated by images/build.py for the duration of a build; never in an image.\n"]
    lines.append("[global]\n")
    if cert is not None:
        shutil.copyfile(cert, folder / "ca.crt")
        lines.append(f"cert = {BUILD_MOUNT}/ca.crt\n")
    lines += [f"{key} = {value}\n" for key, value in sorted(settings.items())]
    (folder / "pip.conf").write_text("".join(lines))


# ---- buildah ------------------------------------------------------------------------------


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    quiet: bool = False,
    show: bool = False,
) -> str:
    """Run a command; on failure raise with its output. stderr is shown live unless `quiet`,
    stdout too (on our stderr) when `show`. Returns stdout (unless shown)."""
    proc = subprocess.run(
        list(args),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=sys.stderr if show else subprocess.PIPE,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip()[-4000:]
        raise RuntimeError(f"{' '.join(args)} failed with {proc.returncode}\n{detail}")
    return proc.stdout


class Buildah:
    """buildah with the cache's own storage, registries.conf and temporary folder."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.root = cache / "storage"
        self.runroot = cache / "run"
        self.tmp = cache / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        registries = cache / "registries.conf"
        registries.write_text(
            "# Short names resolve to docker.io; images are only ever read locally.\n"
            'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n'
        )
        # The CNI backend with its folder in the cache: buildah's default (netavark) creates
        # /etc/containers/networks and /run/containers/networks even though RUN steps here
        # (chroot isolation) use the host's network and never a container network.
        containers_conf = cache / "containers.conf"
        containers_conf.write_text(
            f'[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "{cache / "cni"}"\n'
        )
        self.policy = cache / "policy.json"
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        self.driver = "overlay"
        recipe = cache / "recipe"
        if not recipe.is_file() or recipe.read_text().strip() != RECIPE_VERSION:
            self._wipe_storage()
            (cache / "storage-driver").unlink(missing_ok=True)
        self.env = {
            **os.environ,
            "TMPDIR": str(self.tmp),
            "BUILDAH_ISOLATION": "chroot",
            "CONTAINERS_REGISTRIES_CONF": str(registries),
            "CONTAINERS_CONF": str(containers_conf),
            "CONTAINERS_STORAGE_CONF": str(cache / "storage.conf"),
        }
        self.driver, self.driver_reason = self._choose_driver()
        recipe.write_text(RECIPE_VERSION + "\n")

    def _wipe_storage(self) -> None:
        for folder in (self.root, self.runroot):
            if folder.exists():
                _unmount_below(folder)
                shutil.rmtree(folder)

    def _storage_conf(self, driver: str) -> None:
        (self.cache / "storage.conf").write_text(
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{self.root}"\n'
            f'runroot = "{self.runroot}"\n'
        )

    def _choose_driver(self) -> tuple[str, str]:
        record = self.cache / "storage-driver"
        if record.is_file() and self.root.is_dir():
            driver, _, reason = record.read_text().partition("\n")
            self._storage_conf(driver)
            return driver, reason.strip() or "chosen by an earlier run"
        self._wipe_storage()
        self._storage_conf("overlay")
        try:
            container = self("from", "--quiet", "scratch", quiet=True).strip()
            try:
                mount = Path(self("mount", container, quiet=True).strip())
                (mount / "probe").write_text("ok\n")
                self("umount", container, quiet=True)
                self("commit", "--quiet", "--rm", container, "localhost/inferops-probe", quiet=True)
                container = ""
                self("rmi", "localhost/inferops-probe", quiet=True)
            finally:
                if container:
                    with contextlib.suppress(RuntimeError):
                        self("rm", container, quiet=True)
            driver, reason = "overlay", "overlay probe (mount, write, commit) succeeded"
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1][:200]
            driver, reason = "vfs", f"overlay probe failed ({first})"
            self._wipe_storage()
        record.write_text(f"{driver}\n{reason}\n")
        self._storage_conf(driver)
        return driver, reason

    def argv(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            self.driver,
            *args,
        ]

    def __call__(self, *args: str, quiet: bool = False) -> str:
        return run(self.argv(*args), env=self.env, quiet=quiet)

    def image_id(self, ref: str) -> str | None:
        try:
            out = self(
                "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref, quiet=True
            )
        except RuntimeError:
            return None
        return out.strip() or None

    def remove_image(self, image_id: str) -> None:
        with contextlib.suppress(RuntimeError):
            self("rmi", image_id, quiet=True)

    def push_archive(self, ref: str, archive: Path) -> None:
        """An OCI archive whose index names the image by its full reference."""
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        self(
            "push",
            "--quiet",
            "--signature-policy",
            str(self.policy),
            "--format",
            "oci",
            ref,
            f"oci-archive:{partial}:{ref}",
        )
        partial.replace(archive)


def _unmount_below(path: Path) -> None:
    """Unmount whatever is still mounted under `path` (debootstrap's /proc, /sys), deepest
    first."""
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


# Like Debian's official slim images: no documentation, manuals or translations.
DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
APT_CLEAN = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""  # noqa: E501
# Services installed by a build must not start (RUN steps share the host's network).
POLICY_RC_D = "#!/bin/sh\n# images/build.py: no service starts during an image build.\nexit 101\n"


def _clean_rootfs(root: Path, mirror: str, security: str | None) -> None:
    """Make a debootstrap tree a container base image: apt sources like the official image,
    no caches, lists, logs or host files (resolv.conf, hostname, hosts), an empty /dev."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    sources = (
        f"Types: deb\nURIs: {mirror}\nSuites: {DEBIAN_SUITE} {DEBIAN_SUITE}-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    if security is not None:
        sources += (
            f"\nTypes: deb\nURIs: {security}\nSuites: {DEBIAN_SUITE}-security\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(sources)
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_SLIM)
    (root / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    (root / "etc/apt/apt.conf.d/docker-no-languages").write_text('Acquire::Languages "none";\n')
    (root / "etc/apt/apt.conf.d/docker-autoremove-suggests").write_text(
        'Apt::AutoRemove::SuggestsImportant "false";\n'
    )
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    for rel in ("etc/resolv.conf", "etc/hostname", "etc/hosts", "etc/machine-id"):
        (root / rel).unlink(missing_ok=True)
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
        "var/log/*.log",
        "var/log/apt/*",
        "dev/*",
        "tmp/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/groff/*",
        "usr/share/lintian/*",
        "usr/share/locale/*",
    ):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for doc in (root / "usr/share/doc").glob("*"):
        if doc.is_dir() and not doc.is_symlink():
            for entry in doc.iterdir():
                if entry.name != "copyright":
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def build_base(buildah: Buildah, image: Image, mirror: str, security: str | None) -> str:
    """debootstrap into a scratch working container, clean, commit. Returns the image id."""
    container = buildah("from", "--quiet", "scratch").strip()
    try:
        mount = Path(buildah("mount", container).strip())
        try:
            arch = run(["dpkg", "--print-architecture"]).strip()
            run(
                [
                    "nice",
                    "debootstrap",
                    "--variant=minbase",
                    f"--arch={arch}",
                    DEBIAN_SUITE,
                    str(mount),
                    mirror,
                ],
                quiet=True,
            )
            _clean_rootfs(mount, mirror, security)
        finally:
            _unmount_below(mount)
            buildah("umount", container, quiet=True)
        buildah(
            "config",
            "--env",
            IMAGE_PATH_ENV,
            "--cmd",
            '["bash"]',
            "--created-by",
            f"debootstrap --variant=minbase {DEBIAN_SUITE} (images/build.py)",
            container,
        )
        iidfile = buildah.tmp / "base.iid"
        buildah("commit", "--quiet", "--iidfile", str(iidfile), container, image.ref)
        return iidfile.read_text().strip().removeprefix("sha256:")
    finally:
        with contextlib.suppress(RuntimeError):
            buildah("rm", container, quiet=True)


def build_dockerfile(buildah: Buildah, image: Image, context: Path, *, fresh: bool) -> str:
    """`buildah bud` of a Dockerfile, pulling nothing; `fresh` ignores the layer cache.
    Returns the image id."""
    assert image.dockerfile is not None
    iidfile = buildah.tmp / f"{image.name}.iid"
    args = [
        "bud",
        "--pull=never",
        "--isolation",
        "chroot",
        "--layers",
        "--format",
        "oci",
        "--signature-policy",
        str(buildah.policy),
        "--iidfile",
        str(iidfile),
        "--file",
        str(image.dockerfile),
        "--tag",
        image.ref,
    ]
    if fresh:
        args.append("--no-cache")
    if image.pip:
        mount = buildah.cache / "build-mount"
        write_build_mount(mount)
        args += [
            "--volume",
            f"{mount}:{BUILD_MOUNT}:ro",
            "--build-arg",
            f"PIP_CONFIG_FILE={BUILD_MOUNT}/pip.conf",
        ]
    run(["nice", *buildah.argv(*args, str(context))], env=buildah.env, show=True)
    return iidfile.read_text().strip().removeprefix("sha256:")


def stage_go_binary(image: Image, staging: Path) -> Path:
    """`CGO_ENABLED=0 go build -trimpath` of image.sources into a fresh staging context."""
    assert image.sources is not None
    assert image.go_binary is not None
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    output = staging / image.go_binary
    run(
        ["nice", "go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(output), "."],
        env=env,
        cwd=image.sources,
    )
    dockerignore = image.sources / ".dockerignore"
    if dockerignore.is_file():
        shutil.copyfile(dockerignore, staging / ".dockerignore")
    return staging


# ---- the cache -----------------------------------------------------------------------------


@dataclass
class Record:
    ref: str
    key: str
    image_id: str
    archive: str
    size: int
    seconds: float
    built_at: str

    @classmethod
    def load(cls, path: Path) -> Record | None:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2) + "\n")
        tmp.replace(path)

    def valid(self, key: str, archives: Path) -> bool:
        archive = archives / self.archive  # a file name in the cache's archives folder
        return self.key == key and archive.is_file() and archive.stat().st_size == self.size


def _slug(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", ref)


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build holding {cache / 'lock'}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Builder:
    def __init__(self, cache: Path, force: Iterable[str]) -> None:
        self.cache = cache
        self.archives = cache / "archives"
        self.archives.mkdir(parents=True, exist_ok=True)
        self.force = set(force)
        self._buildah: Buildah | None = None
        self._mirrors: tuple[str, str | None] | None = None
        self.timings: list[tuple[str, str, float]] = []

    @property
    def buildah(self) -> Buildah:
        if self._buildah is None:
            self._buildah = Buildah(self.cache)
            log(f"buildah storage: {self._buildah.driver} ({self._buildah.driver_reason})")
        return self._buildah

    @property
    def mirrors(self) -> tuple[str, str | None]:
        if self._mirrors is None:
            self._mirrors = debian_mirrors()
        return self._mirrors

    def record_path(self, image: Image) -> Path:
        return self.archives / f"{_slug(image.ref)}.json"

    def key(self, image: Image) -> str:
        base_id = None
        if image.base is not None:
            record = Record.load(self.record_path(IMAGES[image.base]))
            base_id = record.image_id if record else None
        mirrors = [m for m in self.mirrors if m] if image.dockerfile is None else []
        return input_key(image, base_id, mirrors)

    def ensure_in_storage(self, image: Image, record: Record) -> None:
        """A base image must be in buildah's storage for FROM; restore it from its archive."""
        if self.buildah.image_id(image.ref) == record.image_id:
            return
        archive = self.archives / record.archive
        log(f"{image.ref}: restoring into buildah storage from {archive}")
        self.buildah(
            "pull",
            "--quiet",
            "--signature-policy",
            str(self.buildah.policy),
            f"oci-archive:{archive}",
            quiet=True,
        )
        self.buildah("tag", record.image_id, image.ref, quiet=True)

    def build(self, image: Image) -> Path:
        if image.base is not None:
            self.build(IMAGES[image.base])
        start = time.monotonic()
        path = self.record_path(image)
        key = self.key(image)
        record = Record.load(path)
        forced = image.name in self.force
        if record is not None and record.valid(key, self.archives) and not forced:
            if not any(t[0] == image.ref for t in self.timings):
                self.timings.append((image.ref, "cached", time.monotonic() - start))
            return self.archives / record.archive
        if image.base is not None:
            base_record = Record.load(self.record_path(IMAGES[image.base]))
            assert base_record is not None
            self.ensure_in_storage(IMAGES[image.base], base_record)
        buildah = self.buildah
        log(f"{image.ref}: building")
        t0 = time.monotonic()
        if image.dockerfile is None:
            mirror, security = self.mirrors
            image_id = build_base(buildah, image, mirror, security)
        elif image.go_binary is not None:
            staging = stage_go_binary(image, self.cache / "contexts" / image.name)
            image_id = build_dockerfile(buildah, image, staging, fresh=forced)
        else:
            assert image.context is not None
            image_id = build_dockerfile(buildah, image, image.context, fresh=forced)
        archive = self.archives / f"{_slug(image.ref)}.oci.tar"
        buildah.push_archive(image.ref, archive)
        if record is not None and record.image_id != image_id:
            buildah.remove_image(record.image_id)
        # Dangling images: the last image of a finished build stage (its layers stay cached
        # only while the image exists), superseded images. The cache keeps the layers of the
        # stages' earlier steps (apt), which is what makes a rebuild fast.
        with contextlib.suppress(RuntimeError):
            buildah("rmi", "--prune", quiet=True)
        seconds = time.monotonic() - t0
        Record(
            ref=image.ref,
            key=key,
            image_id=image_id,
            archive=archive.name,
            size=archive.stat().st_size,
            seconds=round(seconds, 1),
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        ).save(path)
        self.force.discard(image.name)
        self.timings.append((image.ref, "built", seconds))
        log(f"{image.ref}: built in {seconds:.1f} s -> {archive}")
        return archive


def build_images(
    names: Iterable[str] | None = None,
    cache_dir: Path | str | None = None,
    *,
    force: bool = False,
) -> dict[str, Path]:
    """Build (or reuse) the images; returns {reference: OCI archive}. `names` are short
    names (base, inferops, router, pause) or references; None means all four."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    images = resolve(names)
    result: dict[str, Path] = {}
    with cache_lock(cache):
        builder = _Builder(cache, [i.name for i in images] if force else [])
        for image in images:
            result[image.ref] = builder.build(image)
        for ref, how, seconds in builder.timings:
            log(f"{ref:<45} {how:<7} {seconds:6.1f} s")
    return result


def import_images(
    archives: Mapping[str, Path | str],
    containerd_address: str,
    namespace: str = "k8s.io",
    ctr: str = "ctr",
    snapshotter: str | None = None,
) -> list[str]:
    """`ctr images import` each archive so that its image is named exactly by its reference
    (the key), unpacked for the default (or given) snapshotter. Returns the references,
    checked against `ctr images ls`."""
    base = [ctr, "--address", containerd_address, "--namespace", namespace, "images"]
    for ref, archive in archives.items():
        repository = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
        args = [*base, "import", "--base-name", repository]
        if snapshotter:
            args += ["--snapshotter", snapshotter]
        try:
            run([*args, str(archive)], quiet=True)
        except RuntimeError as exc:
            # containerd's snapshotter now and then reports a parent snapshot "does not
            # exist" while it is still being committed (an import right after the archive
            # was rebuilt); the same import a moment later succeeds.
            if "does not exist" not in str(exc):
                raise
            time.sleep(2)
            run([*args, str(archive)], quiet=True)
    listed = set(run([*base, "ls", "--quiet"], quiet=True).split())
    missing = [ref for ref in archives if ref not in listed]
    if missing:
        raise RuntimeError(f"not in containerd after import: {', '.join(missing)}")
    return list(archives)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the Inferops images with buildah (no Docker, no registry), cached.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"images to build: {', '.join(IMAGES)} or their references (default: all)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache root (default: $INFEROPS_IMAGE_CACHE or ~/.cache/inferops/images)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild the named images (default: all) from scratch, even when cached",
    )
    parser.add_argument(
        "--import-to",
        metavar="SOCKET",
        help="then import the archives into the containerd listening on SOCKET",
    )
    parser.add_argument("--namespace", default="k8s.io", help="containerd namespace for import")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.nice(5)  # a build shares the machine; keep it friendly
    start = time.monotonic()
    try:
        archives = build_images(args.names or None, args.cache_dir, force=args.force)
        if args.import_to:
            import_images(archives, args.import_to, args.namespace)
            log(f"imported into {args.import_to} ({args.namespace})")
    except (RuntimeError, ValueError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        return 1
    for ref, archive in archives.items():
        print(f"{ref}\t{archive}")
    log(f"total {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
