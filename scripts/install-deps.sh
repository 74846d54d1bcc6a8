#!/usr/bin/env bash
# Installs the Debian packages mmgrad builds with, if any is missing.
#   scripts/install-deps.sh              install what is missing (apt-get update first)
#   scripts/install-deps.sh --check-only exit 1 if something is missing, install nothing
# Uses sudo when not root. The CUDA toolkit is not installed here: it is optional, and
# found by CMake when nvcc is on PATH.
set -euo pipefail

PACKAGES=(
  build-essential cmake
  libeigen3-dev libstb-dev doctest-dev nlohmann-json3-dev libcli11-dev libfmt-dev zlib1g-dev
  dataset-fashion-mnist  # Fashion-MNIST (gzipped IDX files under /usr/share/datasets/fashion-mnist)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [ "${1:-}" = "--check-only" ]; then
  echo "install-deps: missing: ${missing[*]}"
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
