#!/usr/bin/env bash
# Installs bowlrp (editable) with its test tools, and VLFeat through cyvlfeat
# when it can. Safe to run again: finished steps are skipped.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
cd "$(dirname "$0")/.."

echo "[install] core package, test tools and peer explainers (pip, wheels only)"
"$PYTHON" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,compare,spray]"
echo "[install] ViRelAy and Quantus for the interop tests (their own pins would downgrade pillow / add a second cv2)"
"$PYTHON" -m pip install -q --disable-pip-version-check -c constraints.txt h5py gunicorn flask-cors cachetools
"$PYTHON" -m pip install -q --disable-pip-version-check -c constraints.txt --no-deps virelay==0.6.1 quantus==0.6.0

if "$PYTHON" -c "import cyvlfeat.sift" >/dev/null 2>&1; then
    echo "[install] VLFeat extra: cyvlfeat already importable"
    exit 0
fi
if [ "${BOWLRP_NO_VLFEAT:-0}" = "1" ]; then
    echo "[install] VLFeat extra skipped (BOWLRP_NO_VLFEAT=1); VLFeat cross-checks will be skipped"
    exit 0
fi
if ! dpkg -s libvlfeat-dev >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "[install] apt-get install libvlfeat-dev"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvlfeat-dev >/dev/null
    else
        echo "[install] VLFeat extra NOT installed: libvlfeat-dev is missing and this is not root with apt-get."
        echo "          The core package works without it (OpenCV backend); to add it run as root:"
        echo "            apt-get install libvlfeat-dev"
        echo "            $PYTHON -m pip install numpy cython scipy wheel"
        echo "            $PYTHON -m pip install --no-build-isolation cyvlfeat==0.7.1"
        exit 0
    fi
fi
echo "[install] building cyvlfeat 0.7.1 against libvlfeat (about a minute)"
"$PYTHON" -m pip install -q --disable-pip-version-check -c constraints.txt cython wheel
if "$PYTHON" -m pip install -q --disable-pip-version-check -c constraints.txt --no-build-isolation "cyvlfeat==0.7.1"; then
    echo "[install] VLFeat extra installed"
else
    echo "[install] cyvlfeat failed to build; the core package works without it (OpenCV backend)."
fi
