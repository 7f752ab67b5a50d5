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
