# syntax=docker/dockerfile:1
# The Inferops image: the operator (`inferops operator`) and the data-plane commands
# (`inferops batch-worker`, `agent`, `fetch-model`, `model-server`), plus the example models
# under /opt/inferops/models/<name> (examples/*-application.yaml run them from there).
# Debian's own Python 3.11 (python3 from apt) on debian:bookworm-slim.
#
#   docker build -t ghcr.io/inferops/inferops:0.1.0 .      (or: make image)
#   python3 images/build.py inferops                        (or: make images; no Docker:
#                                                            buildah, cached, see images/)
#
# PIP_CONFIG_FILE (build stage only) is for builders whose network needs a pip
# configuration of its own, e.g. a CA bundle: images/build.py mounts its pip.conf and the
# machine's CA bundle on /mnt during RUN steps and passes /mnt/pip.conf here. Leave it unset
# (Docker users); nothing of it reaches the image.

ARG BASE_IMAGE=debian:bookworm-slim

# ---- python: Debian's python3, shared by both stages ---------------------------------------
FROM ${BASE_IMAGE} AS python
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends \
      python3 ca-certificates netbase tzdata \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log

# ---- build: a wheel of the package, installed with its dependencies into a venv ----------
FROM python AS build
ARG PIP_CONFIG_FILE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install /wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip \
 && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} + \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib
COPY examples/iris/model /opt/inferops/models/iris
COPY examples/image-stats/model /opt/inferops/models/image-stats

# ---- runtime: Debian's python3, the venv, a non-root user --------------------------------
FROM python
LABEL org.opencontainers.image.title="inferops" \
      org.opencontainers.image.description="Kubernetes operator for machine-learning models: AIApplication, RealTimeService, BatchService" \
      org.opencontainers.image.source="https://github.com/inferops/inferops" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 inferops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin inferops
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/inferops/models /opt/inferops/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Runs with a read-only root filesystem (the Helm chart mounts /tmp).
USER 10001:10001
WORKDIR /tmp
# 8080 model server, 8081 operator health, 9090 metrics, 9443 webhooks.
EXPOSE 8080 8081 9090 9443
ENTRYPOINT ["inferops"]
CMD ["operator"]
