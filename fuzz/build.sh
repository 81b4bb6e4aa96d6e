#!/usr/bin/env bash
# Build the libFuzzer targets into fuzz/out/ (see fuzz/README.md).
# Needs clang (Debian: apt-get install clang) and csrc/mongoose.[ch] (any build of
# pymongoose leaves them there, or set MONGOOSE_SRC).
set -euo pipefail
cd "$(dirname "$0")/.."
src="${MONGOOSE_SRC:-csrc}"
out=fuzz/out
mkdir -p "$out"
cc="${CC:-clang}"
# The same configuration as build_ffi.py's DEFINES, plus the sanitizers.
flags=(-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=undefined
       -DMG_TLS=MG_TLS_BUILTIN -DMG_ENABLE_IPV6=1
       "-DMG_MAX_RECV_SIZE=(64UL * 1024UL * 1024UL)" -I"$src" -Icsrc)
# Mongoose and our C are built once, instrumented for coverage but without main().
for unit in "$src/mongoose.c" csrc/glue.c csrc/util.c; do
  obj="$out/$(basename "${unit%.c}").o"
  if [ ! -f "$obj" ] || [ "$unit" -nt "$obj" ]; then
    "$cc" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$unit" -o "$obj"
  fi
done
for target in "${@:-http_conn mqtt utils}"; do
  for t in $target; do
    case "$t" in
      http_conn) objs=("$out/mongoose.o" "$out/glue.o") ;;
      utils) objs=("$out/mongoose.o" "$out/util.o") ;;
      *) objs=("$out/mongoose.o") ;;
    esac
    "$cc" "${flags[@]}" -fsanitize=fuzzer "fuzz/fuzz_$t.c" "${objs[@]}" -lpthread \
      -o "$out/fuzz_$t"
    echo "built $out/fuzz_$t"
  done
done
