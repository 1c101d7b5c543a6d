#!/usr/bin/env bash
# Builds websockify as one executable: rebind.so (for wrap mode, when a C compiler is present) and the program
# itself with `deno compile`, rebind.so embedded.
#
#   ./build.sh                         # for this machine, into dist/websockify
#   ./build.sh --target x86_64-unknown-linux-gnu --output dist/websockify-x86_64
#
# `deno compile` needs Deno's runtime base, denort: it downloads it, or takes the file named by DENORT_BIN.
# Where neither works, this script says so and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")"

target=""
output="dist/websockify"
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --target=*) target="${1#*=}"; shift ;;
    --output) output="$2"; shift 2 ;;
    --output=*) output="${1#*=}"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

command -v deno >/dev/null 2>&1 || { echo "build.sh: deno not found (npm install -g deno@2.9.6)" >&2; exit 1; }

includes=()
if [ -f rebind/rebind.c ]; then
  if [ -z "$target" ] || [ "$target" = "$(deno eval -q 'console.log(Deno.build.target)')" ]; then
    make -s -C rebind
    includes+=(--include rebind/rebind.so)
  else
    echo "build.sh: note: rebind.so is built for this machine only; $target gets none (wrap mode needs it)" >&2
  fi
fi

# The start task's flags: --allow-all is what Deno asks for paths under /dev (--syslog=/dev/log); it includes the
# unscoped --allow-run that LD_PRELOAD needs (wrap mode).
mkdir -p "$(dirname "$output")"
log=$(mktemp)
if ! deno compile --frozen \
  --allow-all --unstable-net \
  ${target:+--target "$target"} "${includes[@]}" --output "$output" main.ts >"$log" 2>&1; then
  cat "$log" >&2
  if grep -qiE 'denort|dl\.deno\.land|error sending request|dns error' "$log"; then
    echo "build.sh: deno compile could not get its runtime base (denort). Download denort for the target" \
      "from Deno's releases and run again with DENORT_BIN=/path/to/denort." >&2
  fi
  exit 1
fi

# A runtime base that is not denort (a full deno in DENORT_BIN, say) compiles but does not run the program.
if [ -z "$target" ]; then
  if ! timeout 20 "$output" --help </dev/null 2>/dev/null | grep -q -- '--unix-listen'; then
    echo "build.sh: $output was built but does not run websockify (is DENORT_BIN really denort?)" >&2
    rm -f "$output"
    exit 1
  fi
fi
echo "built $output"
