#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: set-up, lint, then pytest (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check berth tests bench
.venv/bin/mypy --strict berth/registry  # the registry package is fully typed; keep it so
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
