# Shared install steps for promote's scripts. Each step is idempotent: quiet when already done,
# and says what it is doing when it is slow. Source this file; do not execute it.
set -euo pipefail

PROMOTE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROMOTE_CACHE="${PROMOTE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/promote}"
TEMPORAL_CLI_VERSION="v1.5.1"

say() { printf 'promote: %s\n' "$*" >&2; }

# npm dependencies, reinstalled only when package-lock.json changes.
ensure_node_modules() {
  local stamp="$PROMOTE_ROOT/node_modules/.promote-lock-hash"
  local want
  want="$(sha256sum "$PROMOTE_ROOT/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  say "installing npm dependencies (first run only, about a minute)..."
  # `npm install --no-save` honours the lock file's versions. Not `npm ci`: npm 11 leaves other
  # platforms' optional binaries (@swc/core-*) out of the lock and then refuses it as out of sync.
  (cd "$PROMOTE_ROOT" && npm install --no-save --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" >"$stamp"
}

# TypeScript build into dist/, redone only when a source file is newer than the last build.
ensure_build() {
  local stamp="$PROMOTE_ROOT/dist/.build-stamp"
  if [[ -f "$stamp" ]] && [[ -z "$(find "$PROMOTE_ROOT/src" "$PROMOTE_ROOT/tsconfig.json" \
    "$PROMOTE_ROOT/tsconfig.build.json" "$PROMOTE_ROOT/package-lock.json" -newer "$stamp" -print -quit)" ]]; then
    return 0
  fi
  say "building TypeScript (tsc)..."
  (cd "$PROMOTE_ROOT" && rm -rf dist && npx tsc -p tsconfig.build.json)
  touch "$stamp"
}

# The Temporal CLI (dev server + UI). Order: $TEMPORAL_CLI_PATH, `temporal` on PATH, then a per-user
# cache keyed by version, filled by `go install` (the CLI's release downloads are not reachable here).
ensure_temporal_cli() {
  if [[ -n "${TEMPORAL_CLI_PATH:-}" ]]; then
    [[ -x "$TEMPORAL_CLI_PATH" ]] || { say "TEMPORAL_CLI_PATH=$TEMPORAL_CLI_PATH is not an executable file"; return 1; }
    return 0
  fi
  if command -v temporal >/dev/null 2>&1; then
    TEMPORAL_CLI_PATH="$(command -v temporal)"; export TEMPORAL_CLI_PATH; return 0
  fi
  local dir="$PROMOTE_CACHE/temporal-cli/$TEMPORAL_CLI_VERSION"
  go_install_cached "$dir" temporal "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" \
    "the Temporal CLI $TEMPORAL_CLI_VERSION" "several minutes" TEMPORAL_CLI_PATH || return 1
  TEMPORAL_CLI_PATH="$dir/temporal"; export TEMPORAL_CLI_PATH
}

# Builds a Go program into a per-user cache folder once: go_install_cached DIR BINARY MODULE@VERSION
# WHAT DURATION OVERRIDE (OVERRIDE names the variable a user can set instead). Moved into place only
# when the build succeeded, so an interrupted build is redone.
go_install_cached() {
  local dir="$1" binary="$2" module="$3" what="$4" duration="$5" override="$6"
  [[ -x "$dir/$binary" ]] && return 0
  command -v go >/dev/null 2>&1 || { say "$what is missing and Go is not installed to build it; set $override"; return 1; }
  say "installing $what with go install into $dir (first run only, $duration)..."
  mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" GOFLAGS=-mod=mod go install "$module" >&2
  mkdir -p "$dir" && mv "$dir.tmp/$binary" "$dir/$binary" && rmdir "$dir.tmp"
}

# The time-skipping test server (Temporal's Java test server from Maven Central) and an exec
# wrapper the SDK can start as an existing executable. Cached per user, keyed by version.
TEMPORAL_TEST_SERVER_VERSION="1.31.0"
ensure_test_server() {
  local dir="$PROMOTE_CACHE/temporal-test-server/$TEMPORAL_TEST_SERVER_VERSION"
  if [[ ! -x "$dir/test-server" ]]; then
    command -v mvn >/dev/null 2>&1 || { say "Maven is needed to fetch the Temporal test server"; return 1; }
    command -v java >/dev/null 2>&1 || { say "Java is needed to run the Temporal test server"; return 1; }
    say "fetching the Temporal time-skipping test server $TEMPORAL_TEST_SERVER_VERSION with Maven into $dir (first run only)..."
    mkdir -p "$dir"
    cat >"$dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>promote</groupId><artifactId>temporal-test-server-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>io.temporal</groupId><artifactId>temporal-test-server</artifactId><version>$TEMPORAL_TEST_SERVER_VERSION</version></dependency>
  </dependencies>
</project>
POM
    (cd "$dir" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory=jars >&2)
    printf '#!/usr/bin/env bash\nexec java -cp "%s/jars/*" io.temporal.testserver.TestServer "$@"\n' "$dir" >"$dir/test-server.tmp"
    chmod +x "$dir/test-server.tmp" && mv "$dir/test-server.tmp" "$dir/test-server"
  fi
  TEMPORAL_TEST_SERVER_PATH="$dir/test-server"; export TEMPORAL_TEST_SERVER_PATH
}

# The Python environment of the serving plane (MLflow, scikit-learn), created in place in a per-user
# cache keyed by python/requirements.txt (venvs cannot be moved), marked complete only when done.
ensure_python_env() {
  local key dir
  key="$(sha256sum "$PROMOTE_ROOT/python/requirements.txt" | cut -c1-16)"
  dir="$PROMOTE_CACHE/python/$key"
  if [[ ! -f "$dir/.complete" ]]; then
    say "creating the Python environment (MLflow, scikit-learn) in $dir (first run only, about a minute)..."
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$PROMOTE_ROOT/python/requirements.txt" >&2
    touch "$dir/.complete"
  fi
  PROMOTE_PYTHON_ENV="$dir"; export PROMOTE_PYTHON_ENV
}

# PostgreSQL server binaries (Debian's package) for the prediction log's PostgreSQL tests.
ensure_postgres() {
  if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then return 0; fi
  if [[ "$(id -u)" != "0" ]]; then say "PostgreSQL server binaries are missing: install Debian's postgresql package"; return 1; fi
  say "installing PostgreSQL (apt-get install postgresql; first run only)..."
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# nginx (Debian's package) for the data-plane benchmark's comparison.
ensure_nginx() {
  if [[ -n "${PROMOTE_NGINX:-}" ]]; then return 0; fi
  if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
    PROMOTE_NGINX="$(command -v nginx || echo /usr/sbin/nginx)"; export PROMOTE_NGINX; return 0
  fi
  if [[ "$(id -u)" != "0" ]]; then say "nginx is missing: install Debian's nginx-light package"; return 1; fi
  say "installing nginx (apt-get install nginx-light; first run only)..."
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
  PROMOTE_NGINX=/usr/sbin/nginx; export PROMOTE_NGINX
}

# vegeta, the open-loop HTTP load generator, built with go install into the per-user cache.
VEGETA_VERSION="v12.12.0"
ensure_vegeta() {
  if [[ -n "${PROMOTE_VEGETA:-}" ]]; then return 0; fi
  local dir="$PROMOTE_CACHE/vegeta/$VEGETA_VERSION"
  go_install_cached "$dir" vegeta "github.com/tsenart/vegeta/v12@$VEGETA_VERSION" \
    "vegeta $VEGETA_VERSION" "about a minute" PROMOTE_VEGETA || return 1
  PROMOTE_VEGETA="$dir/vegeta"; export PROMOTE_VEGETA
}

ensure_all() {
  ensure_node_modules
  ensure_build
  ensure_temporal_cli
  ensure_python_env
}
