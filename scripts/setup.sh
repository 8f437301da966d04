#!/usr/bin/env bash
# Set up a development environment on a fresh Debian machine: system packages
# (when run as root and missing) and the project's virtualenv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "${PBXBRIDGE_SKIP_ASTERISK:-0}" != "1" ]; then
  # The real-Asterisk tests need a Debian sid chroot (debootstrap) and sipp.
  command -v debootstrap >/dev/null || need_apt+=(debootstrap)
  command -v sipp >/dev/null || need_apt+=(sip-tester)
  # The agent page's browser tests (tests/integration/test_web_real.py) and
  # benchmarks/page.py drive Debian's headless Chromium over DevTools.
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
fi
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v openssl >/dev/null || need_apt+=(openssl)  # throwaway TLS certificates in the MQTT tests
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: ${need_apt[*]} (sudo apt-get install ...)" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.pbxbridge-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
