#!/usr/bin/env bash
# Set up edgeopt on a fresh machine: a virtual environment in .venv, the package with its test and search
# extras, and the offline Fashion-MNIST data. Safe to run again: each step is skipped or a no-op when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
"$PY" -c 'import sys; v = sys.version_info[:2]; assert (3, 10) <= v <= (3, 13), f"edgeopt needs Python 3.10-3.13 (TensorFlow 2.21), found {v}"'

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
echo "[setup] installing edgeopt and its dependencies into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,search]"
# MediaPipe (the Android ImageClassifier's C++ task, the tests' judge of "an app can load it") in its own
# step: it pins absl-py~=2.3 and TF-MOT 0.8.1 pins absl-py~=1.2, so no single resolve holds both (README).
if ! .venv/bin/python -c 'import mediapipe' >/dev/null 2>&1; then
  echo "[setup] installing mediapipe (Android's ImageClassifier task, for tests and bench --runtime mediapipe)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "mediapipe~=1.2" 2>&1 | grep -v "dependency conflicts\|absl-py\|dependency resolver" || true
  .venv/bin/python -c 'import mediapipe' || { echo "[setup] ERROR: mediapipe did not install"; exit 1; }
fi
# ai-edge-quantizer (INT4 kernels, to_tflite(mode="int4"); optional: without it the int4 tests skip), in its own step
# and with ai-edge-litert held at the installed version, because 0.10.0 pins ai-edge-litert==2.3.0: it is installed
# only when it changes no installed package (small pure-Python wheels: the quantizer, immutabledict, litert-lm-builder, tomli).
if ! .venv/bin/python -c 'import ai_edge_quantizer' >/dev/null 2>&1; then
  LITERT="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("ai-edge-litert"))')"
  echo "[setup] installing ai-edge-quantizer (INT4 export, optional)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "ai-edge-quantizer==0.10.0" "ai-edge-litert==$LITERT" \
    || echo "[setup] WARNING: ai-edge-quantizer 0.10.0 needs ai-edge-litert 2.3.0, not the installed $LITERT: mode='int4' unavailable, its tests skip"
fi

# Fashion-MNIST, offline: Debian's dataset-fashion-mnist package puts the idx files in /usr/share/datasets.
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ ! -f "$HOME/.keras/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
    echo "[setup] installing Debian package dataset-fashion-mnist"
    $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
      || echo "[setup] WARNING: could not install dataset-fashion-mnist; the digits dataset still works offline"
  else
    echo "[setup] WARNING: Fashion-MNIST missing and apt-get unavailable: put its idx .gz files in ~/.keras/datasets/fashion-mnist/"
  fi
fi
echo "[setup] done: $(.venv/bin/python -c 'import tensorflow as tf, tf_keras, tensorflow_model_optimization as m; print("tensorflow", tf.__version__, "tf_keras", tf_keras.__version__, "tfmot", m.__version__)' 2>/dev/null)"
