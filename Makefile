# Local Kubernetes control plane for the tests (see tests/cluster/README.md).
PYTHON ?= python3
CLUSTER_DIR ?= $(or $(INFEROPS_CLUSTER_DIR),$(HOME)/.cache/inferops/cluster)

.PHONY: cluster-build cluster-up cluster-down cluster-status test-cluster

## build (or reuse) etcd, the Kubernetes binaries (kubelet and kube-proxy too), kwok, CoreDNS
cluster-build:
	bash tests/cluster/build.sh

## start the control plane and (as root) the real node, wait until ready, print the kubeconfig
## path; CLUSTER_FLAGS=--no-node for the control plane alone (on loopback)
CLUSTER_FLAGS ?=
cluster-up: cluster-build
	$(PYTHON) tests/cluster/controlplane.py up --dir "$(CLUSTER_DIR)" $(CLUSTER_FLAGS)

## drain and stop the real node (restoring the host), stop the control plane, delete its
## data (logs are kept); fails if the host is not as before
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

## ruff (lint and format), mypy --strict (the package, images/build.py, tools/) and the
## package's import layers (.importlinter; `python tools/import_graph.py` prints the graph)
lint: install
	$(VENV)/bin/ruff check operator tests images tools bench
	$(VENV)/bin/ruff format --check operator tests images tools bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict images/build.py tools/import_graph.py
	$(VENV)/bin/lint-imports

## regenerate crds/ from the models
crds: install
	$(VENV)/bin/inferops crds --output-dir crds

## everything CI runs: install, lint, type-check, build the cluster and the images, all tests
test: lint cluster-build images
	$(VPY) -m pytest -p no:cacheprovider

# ---- Helm chart, container image and the kind workflow -----------------------------------
# `make kind-up deploy e2e` on a workstation with Docker, kind, kubectl and helm:
# a kind cluster from kind-config.yaml, the image built and loaded, the chart installed
# (charts/inferops/ci/kind-values.yaml), the examples applied, the cluster suite run on it.
IMAGE_REPO ?= ghcr.io/inferops/inferops
IMAGE_TAG ?= 0.1.0
IMAGE ?= $(IMAGE_REPO):$(IMAGE_TAG)
ROUTER_IMAGE ?= ghcr.io/inferops/inferops-router:$(IMAGE_TAG)
DOCKER ?= docker
KIND ?= kind
HELM ?= helm
KUBECTL ?= kubectl
KIND_CLUSTER ?= inferops
KIND_KUBECONFIG ?= $(HOME)/.kube/kind-$(KIND_CLUSTER)
RELEASE ?= inferops
RELEASE_NAMESPACE ?= inferops-system
EXAMPLES_NAMESPACE ?= inferops-examples
KIND_KUBECTL = $(KUBECTL) --kubeconfig "$(KIND_KUBECONFIG)"

.PHONY: chart-sync argocd-cm image router-image images kind-up kind-load deploy e2e kind-down

## regenerate the chart's CRD templates and catalog schema from crds/ and the catalog model
chart-sync: install
	$(VPY) charts/sync.py

## print an argocd-cm patch with the Argo CD health check (docs/argocd-health.md)
argocd-cm:
	@$(PYTHON) docs/argocd_cm.py

## with Docker (workstations, kind): the operator image $(IMAGE) from ./Dockerfile
image:
	$(DOCKER) build -t "$(IMAGE)" .

## with Docker: the router image $(ROUTER_IMAGE) (the catalog's default images.router)
router-image:
	$(DOCKER) build -t "$(ROUTER_IMAGE)" images/router

# Without Docker or a registry (CI, the real node of the cluster tests): images/build.py
# builds all four images with buildah (debian:bookworm-slim by debootstrap, the operator
# image from the same ./Dockerfile, the router, the pause image) into OCI archives under
# $(IMAGES_CACHE), rebuilding only what changed. IMAGES_FLAGS: e.g. --force, or names.
IMAGES_CACHE ?= $(or $(INFEROPS_IMAGE_CACHE),$(HOME)/.cache/inferops/images)
IMAGES_FLAGS ?=

## without Docker: build (or reuse) the four images as OCI archives in $(IMAGES_CACHE)
images:
	$(PYTHON) images/build.py --cache-dir "$(IMAGES_CACHE)" $(IMAGES_FLAGS)

## a kind cluster from kind-config.yaml; its kubeconfig in $(KIND_KUBECONFIG)
kind-up:
	@mkdir -p "$(dir $(KIND_KUBECONFIG))"
	$(KIND) get clusters | grep -qx "$(KIND_CLUSTER)" \
	  || $(KIND) create cluster --name "$(KIND_CLUSTER)" --config kind-config.yaml --wait 120s
	$(KIND) get kubeconfig --name "$(KIND_CLUSTER)" > "$(KIND_KUBECONFIG)"

## build the operator and router images and load them into the kind nodes
kind-load: image router-image
	$(KIND) load docker-image "$(IMAGE)" "$(ROUTER_IMAGE)" --name "$(KIND_CLUSTER)"

## install (or upgrade) the chart, apply the examples, wait for them
deploy: kind-load
	$(KIND_KUBECTL) create namespace "$(EXAMPLES_NAMESPACE)" --dry-run=client -o yaml \
	  | $(KIND_KUBECTL) apply -f -
	$(HELM) upgrade --install "$(RELEASE)" charts/inferops --kubeconfig "$(KIND_KUBECONFIG)" \
	  --namespace "$(RELEASE_NAMESPACE)" --create-namespace \
	  --values charts/inferops/ci/kind-values.yaml \
	  --set image.repository="$(IMAGE_REPO)" --set image.tag="$(IMAGE_TAG)" \
	  --wait --timeout 5m
	$(KIND_KUBECTL) apply -n "$(EXAMPLES_NAMESPACE)" \
	  -f examples/iris-application.yaml -f examples/iris-realtime.yaml
	$(KIND_KUBECTL) wait -n "$(EXAMPLES_NAMESPACE)" rts/iris-online \
	  --for=jsonpath='{.status.phase}'=Running --timeout=5m
	$(KIND_KUBECTL) get -n "$(EXAMPLES_NAMESPACE)" aiapp,rts,bs

## the cluster suite (tests/cluster) against the kind cluster
e2e: install
	INFEROPS_E2E_KUBECONFIG="$(KIND_KUBECONFIG)" INFEROPS_KUBECTL="$$(command -v $(KUBECTL))" \
	  $(VPY) -m pytest tests/cluster -q -p no:cacheprovider

## delete the kind cluster
kind-down:
	$(KIND) delete cluster --name "$(KIND_CLUSTER)"
	rm -f "$(KIND_KUBECONFIG)"
