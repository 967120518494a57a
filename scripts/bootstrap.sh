#!/usr/bin/env bash
# Installs what `make run` / `make test` need on a fresh Debian machine:
# the system packages (when root; otherwise it names the missing ones and stops),
# a .venv on Python >= 3.12, and the pinned Python dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-run}

run_pkgs="postgresql postgresql-contrib gettext fonts-nanum libpango-1.0-0 libpangoft2-1.0-0"
test_pkgs="$run_pkgs openssh-server sudo python3-venv chromium poppler-utils"
# the topology test (tests/deploy/test_topology.py) runs them as private processes
test_pkgs="$test_pkgs nginx redis-server"
case "$purpose" in
  test) pkgs=$test_pkgs ;;
  bench) pkgs="$run_pkgs wrk" ;;  # the load generator of `make bench`
  *) pkgs=$run_pkgs ;;
esac
# make run's demo GPU node (root only): an sshd, sudo and the node's Jupyter venv
if [ "$purpose" = run ] && [ "$(id -u)" = 0 ] && [ "${DEMO_NODE:-1}" != 0 ]; then
  pkgs="$pkgs openssh-server sudo python3-venv"
fi

missing=()
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[bootstrap] installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # nginx and redis-server would start as system services on ports 80 and 6379 (and at every
    # boot): the tests run their own. A policy-rc.d that says "no" keeps any service from
    # starting during the install (Debian's invoke-rc.d and deb-systemd-invoke honour it).
    held=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && held=1
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    [ -n "$held" ] && rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      for unit in nginx redis-server; do
        case " ${missing[*]} " in *" $unit "*) systemctl disable --quiet "$unit" 2>/dev/null || true ;; esac
      done
    fi
  else
    echo "[bootstrap] missing system packages: ${missing[*]}" >&2
    echo "[bootstrap] install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# Python >= 3.12 (Django 6.1 needs it). pyenv's, if .python-version names one it has.
find_python() {
  local want; want=$(cat .python-version)
  for c in "${PYTHON:-}" "$HOME/.pyenv/versions/$want/bin/python3" "$(command -v python3.12 || true)" \
           "$(command -v python3.13 || true)" "$(command -v python3 || true)"; do
    [ -n "$c" ] && [ -x "$c" ] && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo "$c"; return; }
  done
  return 1
}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
  py=$(find_python) || { echo "[bootstrap] Python >= 3.12 is required (found none; set PYTHON=/path/to/python3.12)" >&2; exit 1; }
  echo "[bootstrap] creating .venv with $py"
  rm -rf .venv
  "$py" -m venv .venv
fi
if ! cmp -s requirements.txt .venv/.requirements.txt; then
  echo "[bootstrap] installing Python dependencies"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  cp requirements.txt .venv/.requirements.txt
fi
