#!/usr/bin/env bash
# Make sure the Debian packages Qt needs are present.
#   tools/system-deps.sh offscreen   # what headless tests need (EGL, fontconfig, xkbcommon)
#   tools/system-deps.sh xcb         # what a real window needs (xcb platform plugin)
#   tools/system-deps.sh xvfb        # xcb + a virtual X server, for `make screenshots`
#   tools/system-deps.sh package     # xvfb + window tools and the .desktop/AppStream
#                                    # validators, for `make package-check`
# Installs what is missing when run as root with apt-get; otherwise prints the exact
# apt-get line and fails, so nobody meets a Qt plugin traceback instead.
set -euo pipefail
offscreen=(libegl1 libgl1 libfontconfig1 libxkbcommon0 libdbus-1-3 libglib2.0-0)
xcb=(libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
     libxcb-xkb1 libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0 libxcb-xinerama0)
case "${1:-offscreen}" in
  offscreen) want=("${offscreen[@]}") ;;
  xcb) want=("${offscreen[@]}" "${xcb[@]}") ;;
  xvfb) want=("${offscreen[@]}" "${xcb[@]}" xvfb xauth) ;;
  package) want=("${offscreen[@]}" "${xcb[@]}" xvfb xauth xdotool x11-utils
                 desktop-file-utils appstream) ;;
  *) echo "usage: $0 offscreen|xcb|xvfb|package" >&2; exit 2 ;;
esac
command -v dpkg-query >/dev/null || exit 0   # not Debian-like: trust the system
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  }
else
  echo "Qt needs Debian packages that are missing. Run as root: sudo $line" >&2
  exit 1
fi
