#!/usr/bin/env bash
# Install everything photdb needs on a Debian/Ubuntu machine into ./.venv:
# PostgreSQL 15 server binaries with q3c and pgSphere and headless Chromium with its
# driver for the web tests (apt), then the package (pip).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
dpkg -s postgresql-15-q3c >/dev/null 2>&1 || need+=(postgresql-15-q3c)
dpkg -s postgresql-15-pgsphere >/dev/null 2>&1 || need+=(postgresql-15-pgsphere)
python3 -c "import ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
# a real headless browser for the web tests (selenium drives it through chromedriver)
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s chromium-driver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
    echo "photdb install: apt-get install ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
# crowdsource's declared tensorflow/keras are only for a module photdb does not use;
# stellarphot is installed for its real EY UMa test data only.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps crowdsourcephoto stellarphot
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "photdb install: done ($(.venv/bin/photdb --version))"
