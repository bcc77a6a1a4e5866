#!/usr/bin/env bash
# Installs, idempotently, what the end-to-end tests need beyond the build:
# Node.js + npm, Debian's Chromium (never a browser download), nginx, and the npm
# packages in tests/node (playwright-core). Quiet when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
# Forward-auth tests run behind a real nginx (auth_request is in Debian's build).
[ -x /usr/sbin/nginx ] || need+=(nginx)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

# npm ci is exact and fast; skip it when the lock file has not changed.
stamp=tests/node/node_modules/.omnigate-lock
if [ ! -f "$stamp" ] || ! cmp -s tests/node/package-lock.json "$stamp"; then
  (cd tests/node && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  cp tests/node/package-lock.json "$stamp"
fi

# A real SMTP server for mail tests (tests/py/smtp_sink.py).
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check aiosmtpd==1.4.6
fi

# schemathesis, which checks the live admin API against its OpenAPI document,
# in a virtual environment of its own (its dependencies stay out of the system's).
venv=tests/py/.venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
# kubernetes-validate checks the manifests against the Kubernetes API schemas.
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi

# Real PostgreSQL and Redis on 127.0.0.1 (tests use database `test`, a schema
# and a key prefix of their own). Start them if stopped; install if missing.
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq postgresql >/dev/null
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  cluster=$(ls /etc/postgresql | head -n 1)
  $sudo_cmd pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
# Trust auth for the local test user and a `test` database, as on CI machines.
if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
  echo "PostgreSQL at 127.0.0.1:5432 does not accept user postgres on database test (trust auth expected)" >&2
  exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server >/dev/null
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
