#!/usr/bin/env bash
# Runs on a lent GPU machine (the device tool), over device-pack/ from scripts/device-pack.sh:
#
#   scripts/device-check.sh [STAGE...]      stages, in the order given (default: tests bench):
#     tests    the whole cuda-labelled suite (mmg_cuda_tests), per-test durations
#     bench    mmg_bench --device cuda: every kernel against its ceiling (markdown + JSON)
#     torch    bench/torch_compare.py: attention and the contrastive loss against PyTorch
#     demo     `mmg demo --device cuda`: the main job on the GPU, timed
#     fashion  `mmg train --preset fashion-vit --device cuda` (needs the pack's Fashion-MNIST)
#
# Every stage writes its log under $OUT (the device tool brings $OUT back) and the run ends
# with one summary table: stage, exit status (124: its time ran out), seconds, the log's last
# line. A device call has 10 minutes: give each call the stages that fit (tests first; bench
# and torch; demo and fashion), and leave the card's settings alone
# (/work/.library/device/METHOD.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mmg-device-out}
mkdir -p "$OUT"
pack=device-pack/mmg-device.tar.xz
[ -f "$pack" ] || { echo "device-check.sh: no $pack: run scripts/device-pack.sh here and carry device-pack" >&2; exit 2; }

root=/tmp/mmg-device
rm -rf "$root" && mkdir -p "$root/run"
if command -v xz > /dev/null; then
  tar -xJf "$pack" -C "$root"
else  # no xz there: Python's tarfile reads it
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$pack" "$root"
fi
# The CUDA libraries are the device's own toolkit's.
cuda_libs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && cuda_libs="$cuda_libs:$d"
done
# One wrapper per program, so that only our programs load the packed libraries (PyTorch, in
# the same shell, keeps its own libstdc++).
for p in "$root"/bin/*; do
  name=$(basename "$p")
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s/lib%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
    "$root" "$cuda_libs" "$p" > "$root/run/$name"
  chmod +x "$root/run/$name"
done
bin=$root/run

# A device call is cut off at 10 minutes; the stages share MMG_DEVICE_BUDGET seconds (default
# 560), so that the summary always prints: a stage gets what is left, or is skipped.
budget=${MMG_DEVICE_BUDGET:-560}
started=$(date +%s)
summary=()
stage() {  # stage NAME TIMEOUT_S COMMAND...: runs COMMAND, logs to $OUT/NAME.log, adds a summary row
  local name=$1 limit=$2
  shift 2
  local t0 rc left
  t0=$(date +%s)
  left=$((budget - (t0 - started)))
  if [ "$left" -lt 30 ]; then
    summary+=("| $name | - | 0 | skipped: ${left} s left of the call's budget |")
    return
  fi
  [ "$limit" -le "$left" ] || limit=$left
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local last  # doctest's counts where the log has them, else its first error, else its last line
  last=$(grep -E '^\[doctest\] test cases' "$OUT/$name.log" | tail -1)
  [ -n "$last" ] || last=$(grep -m1 -E '^(Error|error)' "$OUT/$name.log")
  [ -n "$last" ] || last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -1)
  summary+=("| $name | $rc | $(($(date +%s) - t0)) | $(echo "$last" | cut -c1-150) |")
}

{
  echo "pack: $(cat "$root/COMMIT")"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
  "$bin/mmg" info
  # A library the loader cannot find shows here first.
  LD_LIBRARY_PATH="$root/lib$cuda_libs" ldd "$root/bin/mmg_cuda_tests" | grep -E "not found|cuda|cublas" || true
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(tests bench)
for s in "${stages[@]}"; do
  case "$s" in
    tests) stage cuda_tests 420 "$bin/mmg_cuda_tests" --duration=true ;;
    bench)
      stage bench 300 "$bin/mmg_bench" --device cuda --markdown --json "$OUT/bench.json"
      cp "$OUT/bench.log" "$OUT/bench.md" ;;
    torch) stage torch_compare 420 python3 bench/torch_compare.py --bench "$bin/mmg_bench" --markdown --json "$OUT/torch.json" ;;
    demo)
      stage demo 540 "$bin/mmg" demo --device cuda --out "$OUT/demo"
      rm -rf "$OUT/demo/checkpoints" ;;
    fashion)
      if [ -d "$root/fashion-mnist" ]; then
        mkdir -p /usr/share/datasets/fashion-mnist && cp "$root"/fashion-mnist/*.gz /usr/share/datasets/fashion-mnist/
      fi
      stage fashion_vit 540 "$bin/mmg" train --preset fashion-vit --device cuda --out "$OUT/fashion-vit"
      rm -rf "$OUT/fashion-vit/checkpoints" ;;
    *) echo "device-check.sh: unknown stage '$s' (tests, bench, torch, demo, fashion)" >&2; exit 2 ;;
  esac
done

echo
echo "| stage | exit | seconds | last line of its log |"
echo "|---|---|---|---|"
printf '%s\n' "${summary[@]}"
