#!/usr/bin/env bash
# Installs what LWM Studio needs to build (and, with --tests, to run its tests) on Debian 12.
# Idempotent and non-interactive: it installs only the packages that are missing, runs
# `apt-get update` only when something is, and leaves a complete environment untouched.
#
#   bash packaging/install-deps.sh            # build dependencies
#   bash packaging/install-deps.sh --tests    # also <repo>/.venv with the pinned test Python
#
# Works as root (CI containers) and through sudo otherwise.
set -euo pipefail

usage() {
  echo "usage: bash packaging/install-deps.sh [--tests]" >&2
  exit 1
}

with_tests=0
for argument in "$@"; do
  case "$argument" in
    --tests) with_tests=1 ;;
    -h|--help) usage ;;
    *) echo "install-deps: unknown option '$argument'" >&2; usage ;;
  esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  build-essential     # g++ 12 with OpenMP
  cmake               # 3.25 (presets, workflows)
  ninja-build
  pkg-config          # finds SentencePiece
  git
  libeigen3-dev       # CPU kernels
  libsentencepiece-dev
  sentencepiece       # spm_* tools, handy to inspect tokenizers
  nlohmann-json3-dev
  libzip-dev          # EPUB books are zip archives
  libxml2-dev         # EPUB books are XHTML, with an XML package and table of contents
  libpoppler-cpp-dev  # PDF books: text per page and the outline
  libcli11-dev        # the lwm command line
  libgtest-dev
  libgmock-dev
  python3-venv        # the test environment below
  qt6-base-dev        # the desktop application and its Qt Test suites (the build skips them without Qt)
  qt6-multimedia-dev  # lwm-studio's video player (QMediaPlayer, QVideoWidget)
  gstreamer1.0-plugins-good  # Qt Multimedia's backend on Debian: MP4/Matroska demuxers
  gstreamer1.0-libav  # ...and the FFmpeg decoders (H.264 and friends) the player needs
  xvfb                # the GUI end-to-end test drives the real window on a virtual X server
  xauth               # xvfb-run needs it
  libavformat-dev     # video reader (core/src/media): containers, seeking
  libavcodec-dev      # video reader: decoders
  libavutil-dev       # video reader: display matrix, frames
  libswscale-dev      # video reader: resize and YUV->RGB
  ffmpeg              # tests and benchmark write their video fixtures with the ffmpeg CLI
  help2man            # manual pages from each program's --help (packaging/)
  librsvg2-bin        # rsvg-convert renders the icon into the hicolor PNG sizes (packaging/)
  lintian             # the package tests check the .deb (packaging/test-package.sh)
  desktop-file-utils  # desktop-file-validate, same
  appstream           # appstreamcli validate, same
  ffmpeg              # tests and benchmark write their video fixtures with the ffmpeg CLI;
                      # lwm eval needle --video draws its needle videos with it
  libpng-dev          # lwm eval needle: the accuracy heatmap PNG
  bible-kjv           # lwm eval needle: the King James Bible as the haystack (`bible` program);
                      # also the haystack the demo model was trained on (resources/demo)
)

if [[ $EUID -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: run as root or install sudo; packages cannot be installed otherwise" >&2
  exit 1
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#packages[@]} Debian packages are installed"
fi

if ((with_tests)); then
  venv="$repo_root/.venv"
  requirements="$repo_root/packaging/requirements-tests.txt"
  # Satisfied when every pinned "name==version" is what the environment already has.
  satisfied() {
    [[ -x "$venv/bin/python3" ]] || return 1
    "$venv/bin/python3" - "$requirements" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, wanted = line.split("==")
    try:
        if version(name) != wanted:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
  }
  if satisfied; then
    echo "install-deps: $venv already has the pinned test packages"
  else
    if [[ ! -x "$venv/bin/python3" ]]; then
      echo "install-deps: creating $venv"
      /usr/bin/python3 -m venv "$venv"
    fi
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    satisfied || { echo "install-deps: $venv does not match $requirements" >&2; exit 1; }
    echo "install-deps: $venv is ready"
  fi
fi
