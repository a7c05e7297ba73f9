#!/usr/bin/env bash
# The test suite on a fresh machine: set up, lint, build the documentation, then pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$root/scripts/setup.sh" "dev"
cd "$root"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$site"
python -m pytest -q "$@"
