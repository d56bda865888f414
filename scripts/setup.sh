#!/usr/bin/env bash
# Create .venv and install the pinned requirements, once per change of the requirement files.
# Usage: scripts/setup.sh [run|test]   ("test" also installs the test tools and Debian's chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
files="requirements.txt"
[ "$mode" = test ] && files="requirements.txt requirements-test.txt"
stamp=".venv/.installed-$(cat $files | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "installing Python packages into .venv (first run: a few minutes)..." >&2
  req=requirements.txt; [ "$mode" = test ] && req=requirements-test.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  touch "$stamp"
fi
if [ "$mode" = test ] && ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser test..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
# Compile the project's own modules, as pip does for installed packages: where PYTHONDONTWRITEBYTECODE is
# set (this project's machines), Python would otherwise compile them again at every start (0.14 s of the
# app's). Only changed files are compiled; a module edited later is compiled in memory until the next run.
.venv/bin/python -m compileall -q app.py pipeline webui eval >/dev/null
