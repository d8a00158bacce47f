#!/bin/bash
# unpack-env.sh ARCHIVE TARGET SHA256
# Unpack a packed runtime (conda-pack or venv-pack) at TARGET and make it runnable there:
#  - conda-pack: bin/conda-unpack rewrites the prefixes;
#  - venv-pack:  scripts come back with '#!/usr/bin/env python' shebangs: point them at
#                TARGET/bin/python again (the interpreter symlinks to the node's python3).
# The old env is replaced only once the new one is complete; TARGET/.optuna-env.sha256 records
# which archive it came from.
set -euo pipefail

archive=$1
target=${2%/}
digest=$3

actual=$(sha256sum "$archive" | cut -d' ' -f1)
if [[ "$actual" != "$digest" ]]; then
  echo "unpack-env: $archive has sha256 $actual, expected $digest" >&2
  exit 1
fi

staging="$target.new"
rm -rf "$staging" "$target.old"
mkdir -p "$staging"
tar -xzf "$archive" -C "$staging"

if [[ -e "$target" ]]; then
  mv "$target" "$target.old"
fi
mv "$staging" "$target"

if [[ -f "$target/bin/conda-unpack" ]]; then
  "$target/bin/python" "$target/bin/conda-unpack"
else
  for script in "$target"/bin/*; do
    [[ -f "$script" && ! -L "$script" ]] || continue
    if head -c 64 "$script" | head -n 1 | grep -Eq '^#!/usr/bin/env python[0-9.]*( |$)'; then
      sed -i -E "1s|^#!/usr/bin/env python[0-9.]*|#!$target/bin/python|" "$script"
    fi
  done
fi

rm -rf "$target.old"
echo "$digest" > "$target/.optuna-env.sha256"
echo "unpacked $archive at $target"
