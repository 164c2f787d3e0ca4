#!/usr/bin/env bash
# npm run bench:gateway: installs nginx (Debian) and vegeta (go install) if missing, builds, runs.
source "$(dirname "$0")/lib.sh"
ensure_node_modules
ensure_build
ensure_nginx
ensure_vegeta
cd "$PROMOTE_ROOT"
exec npx --no-install tsx bench/gateway.ts "$@"
