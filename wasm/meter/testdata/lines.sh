#!/bin/sh
# Builds lines.c into one module per DWARF version (4, what clang 14 emits
# for wasm32 by default, and 5), with source paths relative to testdata/.
set -eu
cd "$(dirname "$0")"
for v in 4 5; do
  clang --target=wasm32 -nostdlib -Wl,--no-entry -O1 -g -gdwarf-$v \
    -fdebug-prefix-map="$(pwd)=." -Wall -Wextra -Werror \
    -o lines-dwarf$v.wasm lines.c
done
