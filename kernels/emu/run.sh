#!/bin/sh
# Differential host emulation of kernels/ncf.cu (no GPU): compiles the kernels as C++ with shim.h
# (one std::thread per CUDA thread, barriers for __syncthreads and warp shuffles), runs the cases
# of main.cpp for NCF_ACT=0 (f32) and 2 (bf16) on a reference ncf.cu (default: git HEAD) and on the
# working tree, and compares: exact for entries without '~', else to 1e-6 of the largest element.
# Usage: kernels/emu/run.sh [reference-ncf.cu]   (needs g++ with C++20, python3; ~1 minute)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
if [ $# -ge 1 ]; then cp "$1" "$w/ref.cu"; else git -C "$root" show HEAD:kernels/ncf.cu > "$w/ref.cu"; fi
cp "$root/kernels/ncf.cu" "$w/new.cu"
cp "$root/kernels/rng.cuh" "$root/kernels/sampler.cuh" "$w/"
# Shared memory: blocks run one after another, so a static array is a block's shared array.
sed 's/__shared__ /static /g' "$root/kernels/factored.cuh" > "$w/factored.cuh"
for v in ref new; do
    sed 's/extern __shared__ float sbias\[\];/float* sbias = g_dyn_smem;/; s/__shared__ /static /g' \
        "$w/$v.cu" > "$w/k_$v.cu"
done
status=0
for a in 0 2; do
    for v in ref new; do
        g++ -std=c++20 -O1 -w -I"$w" -I"$here" -I"$here/inc" -include "$here/shim.h" -DNCF_ACT=$a \
            -DKFILE="\"k_$v.cu\"" "$here/main.cpp" -o "$w/t_$v" -pthread
        "$w/t_$v" "$w/out_$v.bin"
    done
    echo "NCF_ACT=$a:"
    python3 "$here/cmp.py" "$w/out_ref.bin" "$w/out_new.bin" $a || status=1
done
exit $status
