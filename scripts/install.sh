#!/usr/bin/env bash
# Install the ncf tools into a prefix: binaries in PREFIX/bin, man pages in PREFIX/share/man/man1,
# completions for bash (PREFIX/share/bash-completion/completions), zsh
# (PREFIX/share/zsh/site-functions) and fish (PREFIX/share/fish/vendor_completions.d), generated
# from each tool's clap definition (`TOOL --generate-man`, `TOOL --generate-completions SHELL`).
#
#   scripts/install.sh PREFIX [BINDIR [TOOL...]]     (BINDIR default target/release; `make install`)
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 PREFIX [BINDIR [TOOL...]]" >&2; exit 2; }
prefix=$1
bindir=${2:-target/release}
shift $(( $# >= 2 ? 2 : 1 ))
tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(ncf-prep ncf-negsample ncf-train ncf-eval ncf-topk ncf-plot ncf-bench-report)
for t in "${tools[@]}"; do
  [[ -x $bindir/$t ]] || { echo "$0: $bindir/$t not found (build first: make release)" >&2; exit 1; }
done
man=$prefix/share/man/man1 bash_dir=$prefix/share/bash-completion/completions
zsh_dir=$prefix/share/zsh/site-functions fish_dir=$prefix/share/fish/vendor_completions.d
mkdir -p "$prefix/bin" "$man" "$bash_dir" "$zsh_dir" "$fish_dir"
for t in "${tools[@]}"; do
  install -m 755 "$bindir/$t" "$prefix/bin/$t"
  "$bindir/$t" --generate-man "$man"   # TOOL.1, and TOOL-SUBCOMMAND.1 for each subcommand
  "$bindir/$t" --generate-completions bash > "$bash_dir/$t"
  "$bindir/$t" --generate-completions zsh > "$zsh_dir/_$t"
  "$bindir/$t" --generate-completions fish > "$fish_dir/$t.fish"
done
echo "installed ${tools[*]} into $prefix (man: MANPATH=$prefix/share/man man ${tools[0]})" >&2
