#!/usr/bin/env bash
# Installs what `make run` / `make test` need on a fresh Debian machine:
# the system packages (when root; otherwise it names the missing ones and stops),
# a .venv on Python >= 3.12, and the pinned Python dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-run}

run_pkgs="postgresql postgresql-contrib gettext fonts-nanum libpango-1.0-0 libpangoft2-1.0-0"
test_pkgs="$run_pkgs openssh-server sudo python3-venv chromium poppler-utils"
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
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
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
