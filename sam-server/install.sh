#!/usr/bin/env bash
# Installs the SAM server's environment from sam-server/uv.lock into a virtual environment,
# the one the image runs (its Dockerfile calls this script) and the tests start:
#
#   bash sam-server/install.sh <venv> [<uv>]
#
# pip installs the lock's exported pins with --require-hashes: every file is the one the lock
# names, whichever index or local mirror pip's configuration reads it from (uv sync would
# download torch's several GB from the lock's URLs even where a mirror holds the same files).
# sam2 is an sdist built against the installed torch, without its CUDA extension.
# A stamp holding the lock's sha256 makes a second run with an unchanged lock a no-op.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV=${1:?usage: install.sh <venv> [<uv>]}
UV=${2:-uv}
PYTHON=${PYTHON:-python3}
GROUPS_ARGS=(${SAM_SERVER_GROUPS:---group build --group test})
STAMP="$VENV/.sam-server-lock"
WANT="$(sha256sum "$HERE/uv.lock" | cut -d' ' -f1) ${GROUPS_ARGS[*]}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# The lock's wheels (torch's among them) are built for one Python: the one the image runs.
WANTED_PYTHON="$(sed -n 's/^requires-python = "==\(3\.[0-9]*\)\.\*"$/\1/p' "$HERE/pyproject.toml")"
FOUND_PYTHON="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$FOUND_PYTHON" != "$WANTED_PYTHON" ]; then
  echo "error: $VENV runs Python $FOUND_PYTHON; sam-server/uv.lock is for Python $WANTED_PYTHON (set PYTHON=python$WANTED_PYTHON, remove $VENV)" >&2
  exit 1
fi
REQUIREMENTS="$(mktemp)"
trap 'rm -f "$REQUIREMENTS" "$REQUIREMENTS".*' EXIT
"$UV" export --frozen --project "$HERE" --no-emit-project --no-default-groups "${GROUPS_ARGS[@]}" \
  --format requirements-txt --quiet --output-file "$REQUIREMENTS"
# The sdist goes in last, once torch and setuptools are there to build it against.
awk '/^sam2==/{skip=1} skip&&/^[^ ]/&&!/^sam2==/{skip=0} !skip' "$REQUIREMENTS" > "$REQUIREMENTS.wheels"
awk '/^sam2==/{keep=1; print; next} keep&&/^    /{print; next} {keep=0}' "$REQUIREMENTS" > "$REQUIREMENTS.sdist"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes)
"${PIP[@]}" -r "$REQUIREMENTS.wheels"
SAM2_BUILD_CUDA=0 "${PIP[@]}" --no-build-isolation -r "$REQUIREMENTS.sdist"
"$VENV/bin/python" -m pip check >/dev/null || "$VENV/bin/python" -m pip check
echo "$WANT" > "$STAMP"
