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
# Our C files: build_ffi.py's GLUE_SOURCES (read, not imported: no cffi needed).
mapfile -t glue < <(python3 - <<'PY'
import ast
tree = ast.parse(open("build_ffi.py").read())
for node in tree.body:
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "GLUE_SOURCES":
        print("\n".join(ast.literal_eval(node.value)))
PY
)
# Mongoose and our C are built once, instrumented for coverage but without main().
glue_objs=()
for unit in "$src/mongoose.c" "${glue[@]/#/csrc/}"; do
  obj="$out/$(basename "${unit%.c}").o"
  if [ ! -f "$obj" ] || [ "$unit" -nt "$obj" ] || [ csrc/glue.h -nt "$obj" ]; then
    "$cc" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$unit" -o "$obj"
  fi
  [ "$unit" = "$src/mongoose.c" ] || glue_objs+=("$obj")
done
for target in "${@:-http_conn mqtt utils}"; do
  for t in $target; do
    case "$t" in
      http_conn) objs=("$out/mongoose.o" "${glue_objs[@]}") ;;
      utils) objs=("$out/mongoose.o" "$out/util.o") ;;
      *) objs=("$out/mongoose.o") ;;
    esac
    "$cc" "${flags[@]}" -fsanitize=fuzzer "fuzz/fuzz_$t.c" "${objs[@]}" -lpthread \
      -o "$out/fuzz_$t"
    echo "built $out/fuzz_$t"
  done
done
