#!/usr/bin/env bash
# Download PASCAL VOC 2007 (trainval + test) for the Fisher-vector experiments.
# Needs a network; nothing in the test suite uses it. Usage:
#   bash data_scripts/download_voc.sh [target-dir]      (default: data/voc)
set -euo pipefail
target="${1:-data/voc}"
mkdir -p "$target"
base="http://host.robots.ox.ac.uk/pascal/VOC/voc2007"
for f in VOCtrainval_06-Nov-2007.tar VOCtest_06-Nov-2007.tar; do
    if [ ! -f "$target/$f" ]; then
        echo "downloading $f"
        curl -fL --retry 3 -o "$target/$f.part" "$base/$f"
        mv "$target/$f.part" "$target/$f"
    fi
    tar -xf "$target/$f" -C "$target"
done
echo "VOC 2007 in $target/VOCdevkit/VOC2007 (JPEGImages/, Annotations/, ImageSets/Main/)"
