#!/usr/bin/env bash
# Build (or reuse) the binaries of the local test control plane from published Go modules:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok,
#   kubelet and kube-proxy (the real node), coredns (its cluster DNS, see coredns.py)
# into  ${INFEROPS_K8S_CACHE:-$HOME/.cache/inferops/k8s}/<k8s-version>/bin/
# and the Gateway API's HTTPRoute CRD (standard channel, from the sigs.k8s.io/gateway-api
# module) into ${INFEROPS_K8S_CACHE:-...}/gateway-api/<version>/httproutes.yaml.
#
# Usage: tests/cluster/build.sh [--print-bin-dir|--print-gateway-crd] [--force] [COMPONENT...]
#   no COMPONENT = all of them. Idempotent: a binary whose stamp file records the pinned
#   module version is reused, not rebuilt. Versions are pinned by the go.mod files under
#   tests/cluster/build/{kubernetes,etcd,kwok,coredns}/ (four modules: kwok, etcd and coredns
#   pin their own versions of k8s.io/* and grpc/otel, which would fight with k8s.io/kubernetes
#   in one module graph).
# Environment:
#   INFEROPS_K8S_CACHE  cache root (default ~/.cache/inferops/k8s)
#   GOFLAGS/GOMODCACHE/GOCACHE are left to Go's defaults (they persist on the machine).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mods="$here/build"

log() { printf '[cluster-build] %s\n' "$*" >&2; }

modver() { # modver <go.mod> <module path>  -> version required there
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$1"
}

K8S_VERSION="$(modver "$mods/kubernetes/go.mod" k8s.io/kubernetes)"
ETCD_VERSION="$(modver "$mods/etcd/go.mod" go.etcd.io/etcd/server/v3)"
KWOK_VERSION="$(modver "$mods/kwok/go.mod" sigs.k8s.io/kwok)"
COREDNS_VERSION="$(modver "$mods/coredns/go.mod" github.com/coredns/coredns)"
[[ -n "$K8S_VERSION" && -n "$ETCD_VERSION" && -n "$KWOK_VERSION" && -n "$COREDNS_VERSION" ]] || {
  log "could not read pinned versions from $mods/*/go.mod"; exit 1; }

# The newest release whose module still builds with Go 1.26 (v1.7 wants Go 1.27).
GATEWAY_API_VERSION=v1.6.3

cache_root="${INFEROPS_K8S_CACHE:-$HOME/.cache/inferops/k8s}"
bin_dir="$cache_root/$K8S_VERSION/bin"
gateway_crd="$cache_root/gateway-api/$GATEWAY_API_VERSION/httproutes.yaml"

force=0
want=()
for a in "$@"; do
  case "$a" in
    --print-bin-dir) echo "$bin_dir"; exit 0 ;;
    --print-gateway-crd) echo "$gateway_crd"; exit 0 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kwok|kubelet|kube-proxy|coredns) want+=("$a") ;;
    *) log "unknown argument: $a"; exit 2 ;;
  esac
done
((${#want[@]})) || want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kubelet kube-proxy coredns)

command -v go >/dev/null || { log "go is not installed (need Go >= 1.26)"; exit 1; }

version_of() { # the module version a component is built from (its stamp)
  case "$1" in
    etcd) echo "go.etcd.io/etcd/server/v3@$ETCD_VERSION" ;;
    kwok) echo "sigs.k8s.io/kwok@$KWOK_VERSION" ;;
    coredns) echo "github.com/coredns/coredns@$COREDNS_VERSION" ;;
    *) echo "k8s.io/kubernetes@$K8S_VERSION" ;;
  esac
}

# $go_version is part of the stamp too, so a toolchain change is visible (but not a rebuild
# reason: we only compare the module part).
have() { # have <component>: binary present and built from the pinned module version
  local b="$bin_dir/$1" s="$bin_dir/.$1.stamp"
  [[ $force == 0 && -x "$b" && -f "$s" ]] && [[ "$(head -n1 "$s")" == "$(version_of "$1")" ]]
}

todo_k8s=() todo_etcd=0 todo_kwok=0 todo_coredns=0
for c in "${want[@]}"; do
  if have "$c"; then
    log "reuse $bin_dir/$c ($(version_of "$c"))"
    continue
  fi
  case "$c" in
    etcd) todo_etcd=1 ;;
    kwok) todo_kwok=1 ;;
    coredns) todo_coredns=1 ;;
    *) todo_k8s+=("$c") ;;
  esac
done

# kwok's binary has no built-in stages; kwokctl passes it upstream's "fast" node and pod
# stages. We take the same files from the pinned kwok module (not copied into the repo).
kwok_stages() {
  local dir
  dir="$(cd "$mods/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  [[ -n "$dir" && -d "$dir/kustomize/stage" ]] || { log "kwok module source not found"; return 1; }
  log "writing $bin_dir/kwok-stages.yaml from $dir/kustomize/stage"
  local f first=1
  {
    echo "# kwok stages from sigs.k8s.io/kwok@$KWOK_VERSION kustomize/stage (as kwokctl uses them)"
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      ((first)) || echo "---"
      first=0
      cat "$dir/kustomize/stage/$f"
    done
  } >"$bin_dir/.kwok-stages.yaml.tmp"
  mv -f "$bin_dir/.kwok-stages.yaml.tmp" "$bin_dir/kwok-stages.yaml"
}

# The HTTPRoute CRD, so that the API server itself checks the routes of gateway-api mode.
gateway_api_crd() {
  [[ $force == 0 && -s "$gateway_crd" ]] && return 0
  local dir
  dir="$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
         | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  local src="$dir/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
  [[ -n "$dir" && -f "$src" ]] || { log "HTTPRoute CRD not found in gateway-api@$GATEWAY_API_VERSION"; return 1; }
  mkdir -p "$(dirname "$gateway_crd")"
  rm -f "$gateway_crd.tmp" && cat "$src" >"$gateway_crd.tmp" && mv -f "$gateway_crd.tmp" "$gateway_crd"
  log "HTTPRoute CRD of gateway-api@$GATEWAY_API_VERSION in $gateway_crd"
}
gateway_api_crd

if [[ ${#todo_k8s[@]} == 0 && $todo_etcd == 0 && $todo_kwok == 0 && $todo_coredns == 0 ]]; then
  if [[ " ${want[*]} " == *" kwok "* && ! -f "$bin_dir/kwok-stages.yaml" ]]; then
    kwok_stages
  fi
  log "all binaries present in $bin_dir"
  exit 0
fi

mkdir -p "$bin_dir"
# One build at a time per cache (pytest sessions and `make` may race).
exec 9>"$bin_dir/.lock"
if command -v flock >/dev/null; then
  log "waiting for the build lock $bin_dir/.lock" 
  flock 9
fi

export CGO_ENABLED=0
stamp() { # stamp <component>
  { version_of "$1"; go version; date -u +%Y-%m-%dT%H:%M:%SZ; } >"$bin_dir/.$1.stamp"
}
build() { # build <module dir> <ldflags> <out dir> <pkg>...
  local dir="$1" ldflags="$2" out="$3"; shift 3
  log "cd $dir && CGO_ENABLED=0 go build -trimpath -ldflags='$ldflags' -o $out/ $*"
  (cd "$dir" && go build -trimpath -ldflags="$ldflags" -o "$out/" "$@")
}

t0=$(date +%s)
tmp="$(mktemp -d "$bin_dir/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if ((${#todo_k8s[@]})); then
  # the same version stamping as upstream's hack/lib/version.sh, so `kubectl version`,
  # /version and kwok see v1.N.P instead of v0.0.0-master.
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  vflags=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    vflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    vflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  pkgs=()
  for c in "${todo_k8s[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  log "building ${todo_k8s[*]} from k8s.io/kubernetes@$K8S_VERSION (cold: ~10 min on 2 cores)"
  build "$mods/kubernetes" "-s -w$vflags" "$tmp" "${pkgs[@]}"
  for c in "${todo_k8s[@]}"; do mv -f "$tmp/$c" "$bin_dir/$c"; stamp "$c"; done
fi
if ((todo_etcd)); then
  log "building etcd from go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  build "$mods/etcd" "-s -w" "$tmp" .
  mv -f "$tmp/etcd" "$bin_dir/etcd"; stamp etcd
fi
if ((todo_kwok)); then
  log "building kwok from sigs.k8s.io/kwok@$KWOK_VERSION"
  build "$mods/kwok" "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" "$tmp" sigs.k8s.io/kwok/cmd/kwok
  kwok_stages
  mv -f "$tmp/kwok" "$bin_dir/kwok"; stamp kwok
fi
if ((todo_coredns)); then
  # only the plugins that build/coredns/main.go imports: no forward, nothing leaves the host
  log "building coredns from github.com/coredns/coredns@$COREDNS_VERSION"
  build "$mods/coredns" "-s -w" "$tmp" .
  mv -f "$tmp/coredns" "$bin_dir/coredns"; stamp coredns
fi

log "done in $(( $(date +%s) - t0 ))s: $bin_dir"
ls -l "$bin_dir" >&2
