#!/usr/bin/env bash
# Build the release binaries here and gather what the GPU machine needs into .device/ (git-ignored),
# which the device tool carries: the binaries (stripped), the NCF paper's ml-1m split (prepared) and the PyTorch
# peer. The GPU machine has no Rust and no network. Usage: scripts/device-pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${NCF_SHARED:-../shared}
cargo build --release -p ncf-cli -p ncf-cuda
rm -rf .device && mkdir -p .device/bin .device/data
for b in ncf-prep ncf-train ncf-eval ncf-topk ncf-cuda-check; do
  if [ -x target/release/$b ]; then
    cp target/release/$b .device/bin/ && strip .device/bin/$b
  else
    echo "device-pack: target/release/$b missing" >&2; exit 1
  fi
done
# The paper's ml-1m split, prepared here (Parquet is a sixth of the text files' size).
.device/bin/ncf-prep "$shared/datasets/ncf-ml-1m" -o .device/data/ncf-ml-1m
cp "$shared/peers/torch_neumf.py" .device/
du -sh .device
