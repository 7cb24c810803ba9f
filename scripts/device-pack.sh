#!/usr/bin/env bash
# Build the release binaries here and gather what scripts/device-check.sh runs on the GPU machine
# (no Rust, no network there) into .device/ (git-ignored), which the device tool carries:
#   .device/bin     ncf-train, ncf-cuda-check, ncf-devcheck: the only binaries the check runs,
#                   stripped; their symbols stay here in .device/symbols/ (not carried; gdb and
#                   addr2line find them through each binary's .gnu_debuglink)
#   .device/data    the NCF paper's ml-1m split, prepared (Parquet: a sixth of the text files)
#   .device/peer    the PyTorch peer (torch_neumf.py)
#   .device/COMMIT  the commit the binaries were built from
# Then it checks the 64 MiB limit of what travels (the working tree's tracked and
# untracked-not-ignored files plus the carried paths) and prints the size and the carry list.
# Usage: scripts/device-pack.sh   (DEVICE_PACK_NO_BUILD=1: reuse the release binaries as built)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${NCF_SHARED:-../shared}
target=${CARGO_TARGET_DIR:-target}
limit=$((64 << 20))
bins=(ncf-train ncf-cuda-check ncf-devcheck)
carry=(.device/bin .device/data .device/peer .device/COMMIT)

# ncf-train from ncf-cli; ncf-cuda-check and ncf-devcheck from ncf-devcheck (the GPU check's crate).
build=(cargo build --release -p ncf-cli --bin ncf-train --bin ncf-prep -p ncf-devcheck)
[[ -n ${DEVICE_PACK_NO_BUILD:-} ]] || "${build[@]}"
rm -rf .device && mkdir -p .device/bin .device/data .device/peer .device/symbols
for b in "${bins[@]}" ncf-prep; do
  [[ -x $target/release/$b ]] || { echo "device-pack: $target/release/$b missing (${build[*]})" >&2; exit 1; }
done
for b in "${bins[@]}"; do
  objcopy --only-keep-debug "$target/release/$b" ".device/symbols/$b.debug"
  objcopy --strip-all --add-gnu-debuglink=".device/symbols/$b.debug" "$target/release/$b" ".device/bin/$b"
done
"$target/release/ncf-prep" "$shared/datasets/ncf-ml-1m" -o .device/data/ncf-ml-1m -q
cp "$shared/peers/torch_neumf.py" .device/peer/
{ git rev-parse HEAD; git status --porcelain --untracked-files=no | grep -q . && echo "(with uncommitted changes)"; } \
  > .device/COMMIT || true

bytes() { du -cb "$@" | tail -n 1 | cut -f1; }
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
carried=$(bytes "${carry[@]}")
total=$((tree + carried))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
for p in "${carry[@]}"; do printf '  %-16s %s\n' "$p" "$(mib "$(bytes "$p")")"; done
echo "device-pack: carry $(mib "$carried") + working tree $(mib "$tree") = $(mib "$total") of the 64 MiB limit"
echo "device-pack: symbols (kept here, not carried): $(mib "$(bytes .device/symbols)") in .device/symbols/"
if (( total >= limit )); then
  echo "device-pack: over the 64 MiB limit: the device call would be refused" >&2
  exit 1
fi
printf 'device-pack: carry=["%s"]\n' "$(IFS=,; echo "${carry[*]}" | sed 's/,/","/g')"
