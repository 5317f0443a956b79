#!/usr/bin/env bash
# The main job: set everything up, start berthd, make a busybox image from Debian's
# busybox-static (no registry), and run a container that prints a greeting.
# berthd keeps running afterwards; stop it with: kill "$(cat /var/run/berthd.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

SOCK=${BERTH_SOCK:-/var/run/berth.sock}
export DOCKER_HOST="unix://$SOCK"
if ! .venv/bin/berth version >/dev/null 2>&1; then
  echo "demo: starting berthd (log: /var/log/berthd.log)"
  nohup .venv/bin/berthd -H "unix://$SOCK" --pidfile /var/run/berthd.pid >>/var/log/berthd.log 2>&1 &
  for _ in $(seq 100); do .venv/bin/berth version >/dev/null 2>&1 && break; sleep 0.1; done
fi
.venv/bin/python -m berth.tools.mkbusybox -o /tmp/berth-busybox.tar
.venv/bin/berth load -i /tmp/berth-busybox.tar
.venv/bin/berth images
.venv/bin/berth run --rm busybox echo "Hello from a Berth container!"
echo
echo "berthd is running. Try: DOCKER_HOST=$DOCKER_HOST docker run --rm busybox uname -a"
