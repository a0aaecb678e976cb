#!/usr/bin/env bash
# Installation test of the packages (issue 9), run by CI after the tests: builds the .deb and the
# portable archive from a finished build, checks them with lintian, desktop-file-validate and
# appstreamcli, installs the .deb with apt-get, runs every program from it, upgrades over an
# older version with user data in place, and purges it, checking that nothing is left behind.
#
#   bash packaging/test-package.sh [BUILD_DIR]    # default build/default; needs root or sudo
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$(cd "${1:-$repo_root/build/default}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ $EUID -eq 0 ]]; then as_root=(); else as_root=(sudo); fi
say() { echo "test-package: $*"; }
fail() { echo "test-package: FAILED: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive

# 1. Build the packages: the current version and an older one for the upgrade test.
version="$(sed -n 's/^CPACK_PACKAGE_VERSION:[^=]*=//p' "$build_dir/CMakeCache.txt")"
[[ -n "$version" ]] || version="$(grep -m1 -oP 'set\(CPACK_PACKAGE_VERSION "\K[^"]+' "$build_dir/CPackConfig.cmake")"
cpack --config "$build_dir/CPackConfig.cmake" -B "$work/new" >/dev/null
cpack --config "$build_dir/CPackConfig.cmake" -B "$work/old" -G DEB -D CPACK_PACKAGE_VERSION=0.0.1 \
  -D CPACK_DEBIAN_PACKAGE_VERSION=0.0.1 >/dev/null
deb="$(ls "$work"/new/*.deb)"
old_deb="$(ls "$work"/old/*.deb)"
archive="$(ls "$work"/new/*.tar.gz)"
say "built $(basename "$deb") ($(du -h "$deb" | cut -f1)) and $(basename "$archive")"

# 2. Static checks.
lintian --fail-on error,warning --tag-display-limit 0 "$deb" || fail "lintian found problems in $deb"
mkdir -p "$work/unpacked" && dpkg-deb -x "$deb" "$work/unpacked"
desktop-file-validate "$work"/unpacked/usr/share/applications/*.desktop
appstreamcli validate --no-net "$work"/unpacked/usr/share/metainfo/*.metainfo.xml >/dev/null ||
  fail "appstreamcli rejects the metainfo file"
say "lintian, desktop-file-validate and appstreamcli pass"
# One package serves CPU-only machines too: no program may need a CUDA library to start (the
# CUDA runtime is linked statically, cuBLAS is loaded when a GPU is first used).
for program in "$work"/unpacked/usr/bin/*; do
  if readelf -d "$program" | grep -E 'NEEDED.*(cudart|cublas|nccl|libcuda)'; then
    fail "$(basename "$program") needs a CUDA library to start; it must run where no CUDA is installed"
  fi
done
say "no program needs a CUDA library to start"

# 3. The portable archive runs from any folder.
mkdir -p "$work/portable" && tar -xzf "$archive" -C "$work/portable"
portable="$(ls -d "$work"/portable/*/)"
(cd / && "$portable/bin/lwm" --version >/dev/null) || fail "the portable lwm does not start"
(cd / && "$portable/bin/lwm" ask --model "$portable/share/lwm-studio/demo-model" \
   --book "$(ls "$portable"/share/lwm-studio/samples/*.txt | head -1)" --question "Who?" \
   --max-tokens 4 >/dev/null 2>&1) || fail "the portable lwm cannot ask its demo model"
say "the portable archive runs from $portable"

# 4. Install the older version, leave user data, upgrade to this one.
home="$work/home"
mkdir -p "$home/.local/share/LWM/LWM Studio/chats"
echo '{"keep": "me"}' >"$home/.local/share/LWM/LWM Studio/chats/user-chat.json"
"${as_root[@]}" apt-get install -y -q "$old_deb" >/dev/null
[[ "$(dpkg-query -W -f='${Version}' lwm-studio)" == 0.0.1* ]] || fail "the old version did not install"
"${as_root[@]}" apt-get install -y -q "$deb" >/dev/null
installed="$(dpkg-query -W -f='${Version}' lwm-studio)"
[[ "$installed" == "$version"* ]] || fail "upgrade left version $installed, expected $version"
grep -q '"keep"' "$home/.local/share/LWM/LWM Studio/chats/user-chat.json" || fail "upgrade touched user data"
say "upgraded 0.0.1 -> $installed with user data intact"

# 5. Every program runs from the package.
lwm --version
lwm ask --model /usr/share/lwm-studio/demo-model --book "$(ls /usr/share/lwm-studio/samples/*.txt | head -1)" \
  --question "Who is the story about?" --max-tokens 8 >/dev/null 2>&1 || fail "lwm ask on the bundled model failed"
lwm-train run --recipe /usr/share/lwm-studio/recipes/cpu-tiny.json --out "$work/train" --stop-after 3 \
  >/dev/null 2>&1 || fail "lwm-train on the small CPU recipe failed"
if command -v lwm-studio >/dev/null; then
  lwm-studio --version
  HOME="$home" QT_QPA_PLATFORM=offscreen timeout 60 lwm-studio --smoke-test ||
    fail "lwm-studio did not start offscreen"
fi
for program in lwm lwm-train lwm-studio; do
  [[ -f /usr/share/man/man1/$program.1.gz ]] || fail "no manual page for $program"
done
say "lwm, lwm-train and lwm-studio run from the package"

# 6. Purge: nothing of the package may remain.
dpkg-query -L lwm-studio | sort >"$work/files"
"${as_root[@]}" apt-get purge -y -q lwm-studio >/dev/null
left=()
while IFS= read -r path; do
  [[ -f "$path" || -L "$path" ]] && left+=("$path")
  [[ -d "$path" && "$path" == */lwm-studio* ]] && left+=("$path")
done <"$work/files"
((${#left[@]} == 0)) || fail "purge left ${left[*]}"
grep -q '"keep"' "$home/.local/share/LWM/LWM Studio/chats/user-chat.json" || fail "purge touched user data"
say "purge removed every file; user data kept"
say "all checks passed"
