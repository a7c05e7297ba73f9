#!/usr/bin/env bash
# The main job on a fresh machine: set up, then MovieLens-100K -> features -> train -> table -> export.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$root/scripts/setup.sh" "features"
cd "$root"
mentor quickstart "$@"
