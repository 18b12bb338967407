# shellcheck shell=bash
# shellcheck disable=SC2034,SC2153 # sourced: its variables come from and go to scripts/bench
# Sourced by scripts/bench: starts the systems under test and fills, per
# system name, TARGET (loadgen's connection arguments), WATCH (the processes
# whose CPU and RSS a run reports), H2URL and H2AUTH (h2load's URL, and 1 when
# it sends the benchmark's JWT) and PORT (its TLS port).
#
# Two cores run the same configuration: `core` on loopback TCP (the core
# measured direct; behind Caddy and the TCP edges and nginx) and `core_unix`
# on a Unix socket in the work directory (0700), behind the Unix ones.
# --transport (TRANSPORT) picks how the headline edge (all features on), its
# like-for-like edge (no auth), the baseline edge and nginx reach their core;
# edge_$ALT and nginx_$ALT are the same edge and nginx over the other one, the
# pair of rows beside the headline.

EXEC=/vibectl.llm_proxy.VibectlLLMProxy/Execute
log "starting the systems under test (work dir $WORK; headline edge and nginx reach the core over $TRANSPORT)"
start core "$CORE_BIN" serve --config "$WORK/auth.toml" --listen "127.0.0.1:$CORE" --log-level warn
wait_port core "$CORE"
start core_unix "$CORE_BIN" serve --config "$WORK/core_unix.toml" --listen "unix:$WORK/core.sock" --log-level warn
wait_sock core_unix "$WORK/core.sock"
declare -A CORE_ADDR=([tcp]="127.0.0.1:$CORE" [unix]="unix:$WORK/core.sock")
declare -A CORE_PID=([tcp]=${PID[core]} [unix]=${PID[core_unix]})
HEAD_CORE=${CORE_ADDR[$TRANSPORT]} HEAD_CORE_PID=${CORE_PID[$TRANSPORT]}

declare -A PORT=() TARGET=() WATCH=() H2URL=() H2AUTH=() NGINX_WORKER=()

# start_edge NAME CONFIG TRANSPORT [BIN]: an edge (this build's unless BIN)
# with the benchmark's certificate on a free port, reaching the core over
# TRANSPORT.
start_edge() {
  local name=$1 config=$2 transport=$3 bin=${4:-$EDGE_BIN}
  PORT[$name]=$(free_port)
  start "$name" "$bin" --config "$config" --log-level warn serve-custom --cert-file "$CERT" --key-file "$KEY" \
    --listen "127.0.0.1:${PORT[$name]}" --admin-listen "127.0.0.1:$(free_port)" --core "${CORE_ADDR[$transport]}"
  wait_port "$name" "${PORT[$name]}"
}

# start_nginx NAME TRANSPORT: nginx (tuned, one worker) in the edge's place.
start_nginx() {
  local name=$1 user=""
  [ "$(id -u)" -ne 0 ] || user="user root;"
  PORT[$name]=$(free_port)
  mkdir -p "$WORK/$name"
  sed -e "s|@WORK@|$WORK/$name|g" -e "s|@PORT@|${PORT[$name]}|g" -e "s|@UPSTREAM@|${CORE_ADDR[$2]}|g" \
      -e "s|@USER@|$user|g" -e "s|@CERT@|$CERT|g" -e "s|@KEY@|$KEY|g" "$HERE/nginx.conf.in" >"$WORK/$name/nginx.conf"
  start "$name" nginx -p "$WORK/$name" -c "$WORK/$name/nginx.conf" -g 'daemon off;'
  wait_port "$name" "${PORT[$name]}"
  NGINX_WORKER[$name]=$(pgrep -P "${PID[$name]}" | head -1)
}

# tls_target NAME PROC PID TRANSPORT AUTH: NAME on PORT[NAME] over TLS, its
# process PID watched as PROC beside the core it reaches; AUTH 1 sends the JWT.
tls_target() {
  local name=$1 proc=$2 pid=$3 transport=$4 auth=$5
  TARGET[$name]="--target https://127.0.0.1:${PORT[$name]} --ca-file $CA"
  [ "$auth" = 0 ] || TARGET[$name]+=" --token-file $WORK/bench.jwt"
  WATCH[$name]="--watch-pid $proc=$pid --watch-pid core=${CORE_PID[$transport]}"
  H2URL[$name]="https://127.0.0.1:${PORT[$name]}$EXEC" H2AUTH[$name]=$auth
}

TARGET[core]="--target http://127.0.0.1:$CORE" WATCH[core]="--watch-pid core=${PID[core]}"
H2URL[core]="http://127.0.0.1:$CORE$EXEC" H2AUTH[core]=0
start_edge edge "$WORK/auth.toml" "$TRANSPORT"
tls_target edge edge "${PID[edge]}" "$TRANSPORT" 1
if [ "$MODE" != smoke ]; then
  start_edge edge_noauth "$WORK/noauth.toml" "$TRANSPORT"
  tls_target edge_noauth edge "${PID[edge_noauth]}" "$TRANSPORT" 0
  start_edge "edge_$ALT" "$WORK/auth.toml" "$ALT"
  tls_target "edge_$ALT" edge "${PID[edge_$ALT]}" "$ALT" 1
  # Before/after: the baseline edge build, same core, same transport.
  if [ -n "$BASELINE_BIN" ]; then
    start_edge edge_baseline "$WORK/edge_baseline.toml" "$TRANSPORT" "$BASELINE_BIN"
    tls_target edge_baseline edge "${PID[edge_baseline]}" "$TRANSPORT" 1
  fi
fi

if [ "$PEERS" = 1 ]; then
  for n in nginx "nginx_$ALT"; do
    t=$TRANSPORT
    [ "$n" = nginx ] || t=$ALT
    start_nginx "$n" "$t"
    tls_target "$n" nginx "${NGINX_WORKER[$n]}" "$t" 0
  done
  # The headline nginx sent the edge's request as it is, JWT included (it
  # forwards the token to the core unverified): h2load at 64 streams only.
  PORT[nginx_token]=${PORT[nginx]}
  tls_target nginx_token nginx "${NGINX_WORKER[nginx]}" "$TRANSPORT" 1
  # Caddy (2.6) over loopback TCP in every case.
  PORT[caddy]=$(free_port)
  sed -e "s|@PORT@|${PORT[caddy]}|g" -e "s|@CORE@|$CORE|g" -e "s|@CERT@|$CERT|g" -e "s|@KEY@|$KEY|g" \
      "$HERE/Caddyfile.in" >"$WORK/Caddyfile"
  start caddy env HOME="$WORK/caddyhome" XDG_DATA_HOME="$WORK/caddyhome" XDG_CONFIG_HOME="$WORK/caddyhome" \
    caddy run --config "$WORK/Caddyfile" --adapter caddyfile
  wait_port caddy "${PORT[caddy]}"
  tls_target caddy caddy "${PID[caddy]}" tcp 0
fi

if [ "$PYTHON" = 1 ]; then
  PY_INS=$(free_port) PY_TLS=$(free_port) EDGE_INS=$(free_port)
  start edge_insecure "$EDGE_BIN" --config "$WORK/noauth.toml" --log-level warn serve-insecure \
    --listen "127.0.0.1:$EDGE_INS" --admin-listen "127.0.0.1:$(free_port)" --core "$HEAD_CORE"
  wait_port edge_insecure "$EDGE_INS"
  PYENV=(env HOME="$WORK/pyhome" LLM_USER_PATH="$WORK/pyhome/llm" PYTHONWARNINGS=ignore)
  PYLIMITS=(--model echo --log-level warning --max-rpm 100000000 --max-concurrent 100000)
  start py_insecure "${PYENV[@]}" "$VENV/bin/vibectl-server" serve-insecure --host 127.0.0.1 --port "$PY_INS" "${PYLIMITS[@]}"
  start py_tls "${PYENV[@]}" "$VENV/bin/vibectl-server" serve-custom --cert-file "$CERT" --key-file "$KEY" \
    --host 127.0.0.1 --port "$PY_TLS" --require-auth "${PYLIMITS[@]}"
  wait_port py_insecure "$PY_INS"
  wait_port py_tls "$PY_TLS"
  TARGET[edge_insecure]="--target http://127.0.0.1:$EDGE_INS"
  WATCH[edge_insecure]="--watch-pid edge=${PID[edge_insecure]} --watch-pid core=$HEAD_CORE_PID"
  H2URL[edge_insecure]="http://127.0.0.1:$EDGE_INS$EXEC" H2AUTH[edge_insecure]=0
  TARGET[py_insecure]="--target http://127.0.0.1:$PY_INS" WATCH[py_insecure]="--watch-pid python=${PID[py_insecure]}"
  H2URL[py_insecure]="http://127.0.0.1:$PY_INS$EXEC" H2AUTH[py_insecure]=0
  PORT[py_tls]=$PY_TLS
  tls_target py_tls python "${PID[py_tls]}" tcp 1
  WATCH[py_tls]="--watch-pid python=${PID[py_tls]}"
fi
