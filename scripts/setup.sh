#!/usr/bin/env bash
# Creates .venv with the pinned Python stack and fetches the JVM jars.
# Idempotent: a second run only checks. pyspark ships as a large source archive that pip
# builds locally, so built wheels are kept under var/wheels and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=var/wheels
mkdir -p "$WHEELS"
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip wheel setuptools
  if ! ls "$WHEELS"/pyspark-4.2.0-*.whl >/dev/null 2>&1; then
    echo "building the pyspark wheel once (about a minute) into $WHEELS"
    .venv/bin/pip wheel -q --no-deps -w "$WHEELS" pyspark==4.2.0
  fi
  .venv/bin/pip install -q --find-links "$WHEELS" -e ".[dev]"
  touch "$stamp"
fi
scripts/fetch_jars.sh
