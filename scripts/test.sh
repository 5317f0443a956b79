#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: set-up, lint, then pytest (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check berth tests bench
.venv/bin/mypy --strict berth/registry  # the registry package is fully typed; keep it so
.venv/bin/mypy --strict --follow-imports=silent berth/network  # networking, typed throughout
.venv/bin/mypy --strict --follow-imports=silent berth/build  # the builder is fully typed; keep it so
# the API against its backend Protocols, and the wiring that must satisfy them (strict for these files;
# modules they import are checked by their own lines)
.venv/bin/mypy --strict --follow-imports=silent berth/api berth/daemon/main.py berth/daemon/system.py \
    berth/containers/transfer.py berth/threadstream.py berth/detachkeys.py berth/daemon/memory.py
.venv/bin/mypy --follow-imports=silent --warn-unused-ignores berth/runtime berth/containers
.venv/bin/mypy --strict --follow-imports=silent berth/cli  # the CLI and its lean API client
.venv/bin/mypy --strict --follow-imports=silent berth/layers berth/distribution berth/gotime.py  # layer store, pull/push
.venv/bin/mypy --strict --follow-imports=silent berth/images  # image store, load/save, commit
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
