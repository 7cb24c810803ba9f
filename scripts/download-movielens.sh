#!/usr/bin/env bash
# Download a MovieLens zip from GroupLens and check its published md5.
#
#   scripts/download-movielens.sh NAME [DEST]     NAME: ml-1m | ml-20m | ml-latest-small
#
# DEST defaults to data/; the zip lands at DEST/NAME.zip and is ready for
# `ncf-prep DEST/NAME.zip -o ...` (ncf-prep reads GroupLens zips directly).
# NCF_MOVIELENS_URL overrides the base URL (e.g. file:///path/to/dir for offline tests).
set -euo pipefail

usage() { echo "usage: $0 ml-1m|ml-20m|ml-latest-small [DEST]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
name=$1
dest=${2:-data}
case "$name" in
  ml-20m)          md5=cd245b17a1ae2cc31bb14903e1204af3 ;;
  ml-1m)           md5=c4d9eecfca2ab87c1945afe126590906 ;;
  ml-latest-small) md5=31a303aabbc519bd33d025e44d6c2570 ;;  # 2018-09 release
  *) echo "$0: unknown dataset '$name' (expected ml-1m, ml-20m or ml-latest-small)" >&2; exit 2 ;;
esac
base=${NCF_MOVIELENS_URL:-https://files.grouplens.org/datasets/movielens}
url="$base/$name.zip"
out="$dest/$name.zip"
mkdir -p "$dest"

check() { [[ "$(md5sum "$1" | cut -d' ' -f1)" == "$md5" ]]; }

if [[ -f "$out" ]] && check "$out"; then
  echo "$0: $out already present (md5 ok)" >&2
  exit 0
fi

tmp="$out.part.$$"
trap 'rm -f "$tmp"' EXIT
echo "$0: fetching $url" >&2
if command -v curl >/dev/null; then
  fetch() { curl -fsSL --retry 2 -o "$tmp" "$url"; }
elif command -v wget >/dev/null; then
  fetch() { wget -q -O "$tmp" "$url"; }
else
  fetch() { echo "$0: neither curl nor wget is installed" >&2; return 1; }
fi
if ! fetch; then
  cat >&2 <<MSG
$0: could not download $url (no network?).
Place the file by hand: download $name.zip from https://grouplens.org/datasets/movielens/
on a machine with internet access, copy it to $out, and run this script again to check it
(expected md5 $md5).
MSG
  exit 1
fi
if ! check "$tmp"; then
  echo "$0: $url: md5 $(md5sum "$tmp" | cut -d' ' -f1), expected $md5 (corrupt or a different release); not kept" >&2
  exit 1
fi
mv "$tmp" "$out"
trap - EXIT
echo "$0: $out (md5 ok)" >&2
