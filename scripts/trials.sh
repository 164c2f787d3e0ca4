#!/usr/bin/env bash
# Randomized fault trials on the local plane (bench/trials.ts): installs what they need, builds,
# then runs them. Progress on stderr, one JSON summary on stdout; exit 1 when a check failed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_node_modules
ensure_build
ensure_temporal_cli
ensure_python_env
cd "$PROMOTE_ROOT"
exec npx --no-install tsx bench/trials.ts "$@"
