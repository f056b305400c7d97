#!/usr/bin/env bash
# Recompile the test-chain contracts into the committed <Contract>.json artifacts (ABI + bytecode).
# Needs node and npm; installs solcjs (the npm package `solc`, pinned) in a temp dir, so nothing
# is downloaded from anywhere but the npm registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${SOLC_VERSION:-0.8.26}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "solc@$version")
SOLC_MODULE="$work/node_modules/solc" node "$here/compile.js"
