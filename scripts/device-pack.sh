#!/usr/bin/env bash
# Builds what a lent GPU machine runs and packs it for the device tool's `carry`.
#
# That machine has the CUDA toolkit (the same 13.0 as here) but none of the Debian packages the
# build needs (Eigen, fmt, CLI11, doctest, stb, zlib), and nothing can be installed there. So
# the programs are built here, for any x86-64-v3 CPU (AVX2 + FMA, not this machine's
# -march=native) and for Hopper (sm_90), stripped, and packed with the shared libraries they
# load that are not glibc's or CUDA's, plus the Fashion-MNIST files:
#
#   scripts/device-pack.sh            -> device-pack/mmg-device.tar.xz (git ignores device-pack/)
#   scripts/device-pack.sh --no-data  -> the same without Fashion-MNIST (about 30 MB less)
#
# Then, through the device tool: run scripts/device-check.sh with carry ["device-pack"].
set -euo pipefail
cd "$(dirname "$0")/.."

with_data=1
for arg in "$@"; do
  case "$arg" in
    --no-data) with_data=0 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "device-pack.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

BUILD=${BUILD:-build-device}
PROGRAMS=(mmg mmg_cuda_tests mmg_bench)

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMMG_CUDA=ON -DMMG_NATIVE=OFF \
  -DCMAKE_CXX_FLAGS="-march=x86-64-v3" -DCMAKE_CUDA_ARCHITECTURES=90
cmake --build "$BUILD" -j "$(nproc)" --target "${PROGRAMS[@]}"

stage=device-pack/stage
rm -rf device-pack
mkdir -p "$stage/bin" "$stage/lib"
for p in "${PROGRAMS[@]}"; do
  cp "$BUILD/$p" "$stage/bin/"
  strip "$stage/bin/$p"
done

# The libraries to carry: every one the programs load, but glibc's own (the device's glibc is
# newer and backward compatible) and CUDA's (the device's toolkit provides them).
for p in "${PROGRAMS[@]}"; do ldd "$BUILD/$p"; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    case "$name" in
      libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux*) ;;
      libcuda* | libcublas* | libcudnn* | libnccl* | libnvrtc* | libnvJitLink*) ;;
      *) cp -L "$path" "$stage/lib/$name" ;;
    esac
  done

if [ "$with_data" = 1 ]; then
  mkdir -p "$stage/fashion-mnist"
  fashion=/usr/share/datasets/fashion-mnist
  for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -f "$fashion/$f" ] || { echo "device-pack.sh: $fashion/$f is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
    cp "$fashion/$f" "$stage/fashion-mnist/"
  done
fi

git rev-parse HEAD > "$stage/COMMIT" 2>/dev/null || echo unknown > "$stage/COMMIT"
git status --porcelain | grep -q . && echo "(with uncommitted changes)" >> "$stage/COMMIT" || true
tar -cJf device-pack/mmg-device.tar.xz -C "$stage" .
rm -rf "$stage"
size=$(stat -c %s device-pack/mmg-device.tar.xz)
echo "device-pack/mmg-device.tar.xz: $((size / 1048576)) MiB (the device tool carries 64 MiB at most)"
[ "$size" -lt $((64 * 1048576)) ] || { echo "device-pack.sh: too large to carry; try --no-data" >&2; exit 1; }
