#!/usr/bin/env bash
# Install what Berth needs on a fresh Debian 12 machine (as root): the OCI runtimes, conmon,
# busybox-static for the base image, and a virtualenv with the berth package. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in crun:crun runc:runc conmon:conmon busybox:busybox-static tini-static:tini catatonit:catatonit \
            docker-registry:docker-registry skopeo:skopeo gcc:gcc iptables:iptables ip:iproute2 curl:curl \
            docker-compose:docker-compose openssl:openssl; do  # registry interop; gcc: the race helper; networking; compose and TLS tests
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
# the race tests build a static helper: that needs libc.a besides gcc
ls /usr/lib/*/libc.a >/dev/null 2>&1 || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# (re)install when the venv lacks the package or pyproject.toml changed since the last install
stamp=.venv/.pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if ! .venv/bin/python -c 'import berth' 2>/dev/null || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  echo "$want" > "$stamp"
fi

# berth-monitor, the per-container monitor (C): built now into its cache directory, keyed by the
# source's hash; berthd builds it on first use when missing (an editable install) and falls back to
# conmon when it cannot
.venv/bin/python -c 'from berth.runtime.berthmon import build, self_check; self_check(build())'
