#!/usr/bin/env bash
# The real SAM ML backend on this machine, for the opt-in test (tests/test_sam_real_backend_live.py)
# and the latency benchmark (benchmarks/sam_latency.py): the `segment_anything_model` example of
# label-studio-ml-backend with MobileSAM, in a virtual environment of its own. torch never enters
# the project's .venv or uv.lock.
#
#   make env-sam-backend            (or: bash tools/sam_backend_env.sh)
#
# Everything lands under $SAM_BACKEND_HOME (default ~/.cache/labeling-platform/sam-backend):
#   label-studio-ml-backend/   the example's source (LABEL_STUDIO_ML_BACKEND_DIR points here)
#   MobileSAM/, segment-anything/   the model packages the example installs from git
#   venv/                      the example's requirements with torch (SAM_BACKEND_VENV)
# Sources are cloned from GitHub at the commits below; where GitHub is out of reach, point
# ML_BACKEND_GIT, MOBILE_SAM_GIT and SEGMENT_ANYTHING_GIT at local clones or mirrors.
set -euo pipefail

HOME_DIR=${SAM_BACKEND_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/labeling-platform/sam-backend}
PYTHON=${PYTHON:-python3}
ML_BACKEND_GIT=${ML_BACKEND_GIT:-https://github.com/HumanSignal/label-studio-ml-backend.git}
MOBILE_SAM_GIT=${MOBILE_SAM_GIT:-https://github.com/ChaoningZhang/MobileSAM.git}
SEGMENT_ANYTHING_GIT=${SEGMENT_ANYTHING_GIT:-https://github.com/facebookresearch/segment-anything.git}
# The commits the measurements in docs/sam-backend.md were taken at (2026-08-20, 2024-11-20, 2023-07-11).
ML_BACKEND_COMMIT=d02cedf35d0e5d21f2f437c120174c62f66bf57a
MOBILE_SAM_COMMIT=34bbbfdface3c18e5221aa7de6032d7220c6c6a1
SEGMENT_ANYTHING_COMMIT=dca509fe793f601edb92606367a655c15ac00fdf
EXAMPLE=label_studio_ml/examples/segment_anything_model

# torch: the example pins torch 2.0.1 / torchvision 0.15.2 (CUDA 11.7, Python <= 3.11 wheels
# that this machine cannot download). mobile_sam and segment_anything import torchvision, and
# PyPI's torchvision does not load beside the CPU-only torch 2.13.0 wheel on this disk
# ("operator torchvision::nms does not exist"). The matching pair that lies on disk for
# Python 3.11 is torch 2.14.1 with torchvision 0.29.1 on x86_64 (a CUDA build, about 5.5 GB,
# running on the CPU here) and torch 2.9.1 with torchvision 0.24.1 on aarch64 (a CPU build).
case "$(uname -m)" in
  aarch64|arm64) TORCH="torch==2.9.1 torchvision==0.24.1" ;;
  *) TORCH="torch==2.14.1 torchvision==0.29.1" ;;
esac

# The checkouts leave out what no install needs (notebooks, animations, checkpoints): the
# repositories' own weights are not used, and mirrors may not carry such large files.
checkout() {  # name, source, commit: a clone at that commit, made once
  local target="$HOME_DIR/$1"
  if [ -d "$target/.git" ] && [ "$(git -C "$target" rev-parse HEAD)" = "$3" ]; then
    return
  fi
  rm -rf "$target" "$target.partial"
  git clone --quiet --no-checkout "$2" "$target.partial"
  git -C "$target.partial" sparse-checkout set --no-cone '/*' '!*.gif' '!*.ipynb' '!*.pt' '!*.pth'
  git -C "$target.partial" -c advice.detachedHead=false checkout --quiet "$3"
  mv "$target.partial" "$target"
}

mkdir -p "$HOME_DIR"
checkout label-studio-ml-backend "$ML_BACKEND_GIT" "$ML_BACKEND_COMMIT"
checkout MobileSAM "$MOBILE_SAM_GIT" "$MOBILE_SAM_COMMIT"
checkout segment-anything "$SEGMENT_ANYTHING_GIT" "$SEGMENT_ANYTHING_COMMIT"

VENV="$HOME_DIR/venv"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

# The image's steps, in its order (its Dockerfile): numpy, requirements-base.txt,
# requirements.txt. Its git requirements become the local clones; label-studio-ml's own
# git requirement on label-studio-sdk becomes the PyPI release, so it is installed without
# dependencies and they are installed from its requirements.txt with that one line changed.
SOURCE="$HOME_DIR/label-studio-ml-backend"
REQUIREMENTS="$HOME_DIR/requirements.txt"
{
  grep -h -v -e '^label-studio-ml' -e '^torch' -e '^torchvision' -e '^segment_anything' -e '^mobile-sam' \
    "$SOURCE/$EXAMPLE/requirements-base.txt" "$SOURCE/$EXAMPLE/requirements.txt"
  grep -v -e '^label-studio-sdk' -e '^#' "$SOURCE/requirements.txt"
  echo "label-studio-sdk"
} | grep -v '^\s*$' > "$REQUIREMENTS"

"${PIP[@]}" "numpy>=2,<2.3.0"
"${PIP[@]}" $TORCH
"${PIP[@]}" -r "$REQUIREMENTS" $TORCH
"${PIP[@]}" --no-deps "$SOURCE" "$HOME_DIR/MobileSAM" "$HOME_DIR/segment-anything"
"$VENV/bin/python" -m pip check >/dev/null || "$VENV/bin/python" -m pip check

"$VENV/bin/python" - <<'EOF'
import mobile_sam, segment_anything, torch, torchvision, label_studio_ml, label_studio_sdk, gunicorn  # noqa
from importlib.metadata import version
print("SAM backend environment: torch", torch.__version__, "torchvision", torchvision.__version__,
      "label-studio-sdk", version("label-studio-sdk"), "gunicorn", gunicorn.__version__)
EOF
echo "export LABEL_STUDIO_ML_BACKEND_DIR=$SOURCE"
echo "export SAM_BACKEND_VENV=$VENV"
