# Local Kubernetes control plane for the tests (see tests/cluster/README.md).
PYTHON ?= python3
CLUSTER_DIR ?= $(or $(INFEROPS_CLUSTER_DIR),$(HOME)/.cache/inferops/cluster)

.PHONY: cluster-build cluster-up cluster-down cluster-status test-cluster

## build (or reuse) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok
cluster-build:
	bash tests/cluster/build.sh

## start the control plane on loopback, wait for /readyz, print the kubeconfig path
cluster-up: cluster-build
	$(PYTHON) tests/cluster/controlplane.py up --dir "$(CLUSTER_DIR)"

## stop every process of the control plane and delete its data (logs are kept)
cluster-down:
	$(PYTHON) tests/cluster/controlplane.py down --dir "$(CLUSTER_DIR)"

cluster-status:
	$(PYTHON) tests/cluster/controlplane.py status --dir "$(CLUSTER_DIR)"

## the cluster tests (own control plane, or $$INFEROPS_E2E_KUBECONFIG)
test-cluster:
	$(PYTHON) -m pytest tests/cluster -q

# ---- Python package: install, lint, test (README's test command is `make test`) ----------
VENV ?= .venv
VPY := $(VENV)/bin/python

.PHONY: install lint crds test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $@

## create .venv with the package and its dev tools
install: $(VENV)/.installed

## ruff (lint and format) and mypy --strict
lint: install
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/ruff format --check operator
	$(VENV)/bin/mypy

## regenerate crds/ from the models
crds: install
	$(VENV)/bin/inferops crds --output-dir crds

## everything CI runs: install, lint, type-check, build the control plane, all tests
test: lint cluster-build
	$(VPY) -m pytest -p no:cacheprovider
