# Shared by scripts/test and scripts/run: install what is missing, start what must run.

step() { printf '\n==> %s\n' "$*"; }

need_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install a stable Rust toolchain (rustup) first" >&2
    exit 2
  fi
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages PACKAGE:FILE ... installs each Debian package whose FILE is missing.
ensure_packages() {
  local missing=() spec
  for spec in "$@"; do
    [ -e "${spec#*:}" ] || missing+=("${spec%%:*}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
}

amqp_answers() {
  timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null
}

# ensure_rabbitmq starts the machine's RabbitMQ node when nothing answers on 127.0.0.1:5672,
# unless AMQP_URL points the tests elsewhere.
ensure_rabbitmq() {
  if [ -n "${AMQP_URL:-}" ] || amqp_answers; then return 0; fi
  step "starting RabbitMQ"
  as_root rabbitmq-server -detached
  local i
  for i in $(seq 1 120); do
    if amqp_answers; then
      as_root rabbitmqctl -q await_startup --timeout 60 && return 0
    fi
    sleep 1
  done
  echo "RabbitMQ did not start on 127.0.0.1:5672" >&2
  exit 1
}

# need_tools NAME ... stops, naming the first command that is missing.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "$tool not found: install it first" >&2
      exit 2
    }
  done
}

answers_on() { # PORT: whether something takes connections on 127.0.0.1:PORT
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# free_port prints a port nothing listens on, from 5100 up.
free_port() {
  local port
  for port in $(seq 5100 5999); do
    answers_on "$port" || { echo "$port"; return 0; }
  done
  echo "no free port between 5100 and 5999" >&2
  exit 1
}

# registry_program prints distribution's registry program: `registry` on the PATH or in
# target/tools/bin, else Debian's docker-registry (installed when missing).
registry_program() {
  if command -v registry >/dev/null 2>&1; then command -v registry; return; fi
  if [ -x "$PWD/target/tools/bin/registry" ]; then echo "$PWD/target/tools/bin/registry"; return; fi
  ensure_packages docker-registry:/usr/bin/docker-registry >&2
  echo /usr/bin/docker-registry
}

# registry_running DIR: whether the registry start_registry left in DIR still runs and answers.
registry_running() {
  local dir=$1 pid port
  [ -f "$dir/pid" ] && [ -f "$dir/port" ] || return 1
  pid=$(cat "$dir/pid")
  port=$(cat "$dir/port")
  kill -0 "$pid" 2>/dev/null && curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null
}

# start_registry DIR PORT starts a registry of its own on 127.0.0.1:PORT, its data, config,
# log and pid in DIR. A port something else answers on is refused, never used.
start_registry() {
  local dir=$1 port=$2 program i
  if answers_on "$port"; then
    echo "127.0.0.1:$port is in use by something these scripts did not start: stop it, or choose another port" >&2
    exit 1
  fi
  ensure_packages curl:/usr/bin/curl
  program=$(registry_program)
  mkdir -p "$dir/storage"
  cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  OTEL_TRACES_EXPORTER=none nohup "$program" serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
  echo $! > "$dir/pid"
  echo "$port" > "$dir/port"
  for i in $(seq 1 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "the registry on 127.0.0.1:$port did not start; see $dir/registry.log" >&2
  exit 1
}

# stop_registry DIR stops the registry start_registry left in DIR, if it runs.
stop_registry() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$dir/pid" "$dir/port"
}

# own_registry prints HOST:PORT of a registry of scripts/run's own (data under
# target/local-registry): the one it started before when that still runs, else a new one on
# a free port. A registry it did not start is never used.
own_registry() {
  local dir="$PWD/target/local-registry" port
  if registry_running "$dir"; then
    echo "127.0.0.1:$(cat "$dir/port")"
    return 0
  fi
  stop_registry "$dir"
  port=$(free_port)
  step "starting a registry of its own on 127.0.0.1:$port (data in $dir)" >&2
  start_registry "$dir" "$port" >&2
  echo "127.0.0.1:$port"
}

# The folder the pinned Go tools live in (cargo clean resets it).
TOOLS_BIN="$PWD/target/tools/bin"

need_go() {
  if ! command -v go >/dev/null 2>&1; then
    if [ -x /usr/local/go/bin/go ]; then
      PATH="$PATH:/usr/local/go/bin"
    else
      echo "go not found: the test peers need Go >= 1.26 (https://go.dev/doc/install)" >&2
      exit 2
    fi
  fi
}

# go_tool_version BINARY prints "MODULE VERSION" from the binary's build information.
go_tool_version() {
  go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $2, $3; exit }'
}

# ensure_go_tools [NAME ...] installs the tools of scripts/go-tools.txt (all, or those named)
# that are missing from $TOOLS_BIN or were built from another version, prints each one's
# version once, and puts $TOOLS_BIN first on PATH.
ensure_go_tools() {
  need_go
  mkdir -p "$TOOLS_BIN"
  local name package version module have wanted=" $* " line status
  step "Go tools in ${TOOLS_BIN#"$PWD"/}"
  while read -r name package version; do
    case "$name" in '' | '#'*) continue ;; esac
    [ -z "${*}" ] || [[ "$wanted" == *" $name "* ]] || continue
    have="$(go_tool_version "$TOOLS_BIN/$name" || true)"
    status=found
    if [ "${have##* }" != "$version" ]; then
      status=installed
      if ! GOBIN="$TOOLS_BIN" GOFLAGS=-buildvcs=false go install "$package@$version" \
        > "$TOOLS_BIN/.$name.log" 2>&1; then
        tail -n 20 "$TOOLS_BIN/.$name.log" >&2
        echo "could not install $name ($package@$version); see $TOOLS_BIN/.$name.log" >&2
        exit 1
      fi
      have="$(go_tool_version "$TOOLS_BIN/$name")"
    fi
    module="${have% *}"
    line="$(printf '%-9s %s %s (%s)' "$name" "$module" "${have##* }" "$status")"
    echo "$line"
  done < scripts/go-tools.txt
  export PATH="$TOOLS_BIN:$PATH"
}

# ensure_nextest installs cargo-nextest when cargo has no nextest subcommand.
ensure_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then return 0; fi
  step "installing cargo-nextest (cargo install, once)"
  cargo install cargo-nextest --locked
}

ensure_cargo_fuzz() {
  if cargo fuzz --version >/dev/null 2>&1; then return 0; fi
  step "installing cargo-fuzz (cargo install, once)"
  cargo install cargo-fuzz --locked
}

# The pinned validation tools of the chart's tests (see scripts/chart-tools).
KUBERNETES_VALIDATE_VERSION=1.37.0
KEDA_VERSION=v2.21.1
PROMETHEUS_OPERATOR_VERSION=v0.85.0

# ensure_chart_tools installs kubernetes-validate into target/tools/venv and the CRDs of KEDA
# and the Prometheus Operator into target/tools/crds, when missing.
ensure_chart_tools() {
  local tools="$PWD/target/tools" proxy zip
  if [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
    step "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $tools/venv"
    rm -rf "$tools/venv"
    if ! python3 -m venv "$tools/venv" 2>/dev/null; then
      rm -rf "$tools/venv"
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv
      /usr/bin/python3 -m venv "$tools/venv"
    fi
    "$tools/venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi
  if [ ! -f "$tools/crds/keda.sh_scaledobjects.yaml" ] ||
     [ ! -f "$tools/crds/monitoring.coreos.com_servicemonitors.yaml" ]; then
    ensure_packages curl:/usr/bin/curl unzip:/usr/bin/unzip
    step "fetching the CRDs of KEDA $KEDA_VERSION and the Prometheus Operator $PROMETHEUS_OPERATOR_VERSION"
    proxy=${GOPROXY:-https://proxy.golang.org}
    proxy=${proxy%%,*}
    [ "$proxy" = direct ] || [ "$proxy" = off ] && proxy=https://proxy.golang.org
    mkdir -p "$tools/crds"
    zip=$(mktemp)
    curl -fsSL -o "$zip" "$proxy/github.com/kedacore/keda/v2/@v/$KEDA_VERSION.zip"
    unzip -q -j -o "$zip" "github.com/kedacore/keda/v2@$KEDA_VERSION/config/crd/bases/keda.sh_scaledobjects.yaml" \
      "github.com/kedacore/keda/v2@$KEDA_VERSION/config/crd/bases/keda.sh_triggerauthentications.yaml" -d "$tools/crds"
    curl -fsSL -o "$zip" "$proxy/github.com/prometheus-operator/prometheus-operator/@v/$PROMETHEUS_OPERATOR_VERSION.zip"
    unzip -q -j -o "$zip" \
      "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
      "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" -d "$tools/crds"
    rm -f "$zip"
  fi
}
