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

# ensure_local_registry starts a docker-registry on 127.0.0.1:5000 (data under
# target/local-registry) unless something already answers there.
ensure_local_registry() {
  if curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null; then return 0; fi
  ensure_packages docker-registry:/usr/bin/docker-registry curl:/usr/bin/curl
  local dir="$PWD/target/local-registry"
  mkdir -p "$dir/storage"
  cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:5000
YAML
  step "starting a local registry on 127.0.0.1:5000 (data in $dir)"
  nohup /usr/bin/docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
  local i
  for i in $(seq 1 50); do
    curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null && return 0
    sleep 0.2
  done
  echo "the local registry did not start; see $dir/registry.log" >&2
  exit 1
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
