#!/usr/bin/env bash
# Screenshots of the main pages (PNG) into docs/: runs the browser tests, which save them
# when PHOTDB_SCREENSHOTS is set (a real server over a processed simulated survey).
set -euo pipefail
cd "$(dirname "$0")/.."
PHOTDB_SCREENSHOTS="$PWD/docs" .venv/bin/python -m pytest -q src/photdb/web/tests/test_browser.py
ls -l docs/*.png
