#!/usr/bin/env bash
# Check a built bundle the way a user meets it (make package-check runs this):
#   1. the Qt platform plugins it needs are inside;
#   2. its `slimpajama` command runs a short job end to end (packaging/smoke-recipe.yaml);
#   3. under Xvfb, `slimpajama-studio` opens its main window ("SlimPajama Studio"), which
#      is then closed with Ctrl+Q and must exit by itself;
#   4. desktop-file-validate and appstreamcli validate pass on packaging/linux/.
# Usage: packaging/check_bundle.sh [BUNDLE_DIR] [--no-job]
# Needs (Debian): xvfb xauth xdotool x11-utils desktop-file-utils appstream
#   (tools/system-deps.sh package installs them). Exits non-zero at the first failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bundle="${1:-$here/../dist/SlimPajamaStudio}"
run_job=1
[ "${2:-}" = "--no-job" ] && run_job=0
app_id=io.github.slimpajama.Studio
title="SlimPajama Studio"
wait_s="${WINDOW_TIMEOUT:-120}"
quit_s="${QUIT_TIMEOUT:-90}"

fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$bundle/slimpajama-studio" ] || fail "$bundle/slimpajama-studio is missing; run make package first."
[ -x "$bundle/slimpajama" ] || fail "$bundle/slimpajama is missing; run make package first."
for tool in xvfb-run xdotool xwininfo desktop-file-validate appstreamcli; do
  command -v "$tool" >/dev/null || fail "$tool is not installed; run tools/system-deps.sh package (as root)."
done

# A scratch data folder and settings, so the check neither reads nor writes the user's.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export SLIMPAJAMA_HOME="$scratch/data" XDG_CONFIG_HOME="$scratch/config" \
       XDG_CACHE_HOME="$scratch/cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

echo "== 1. Qt platform plugins"
for platform in xcb offscreen; do
  plugin="$(find -L "$bundle" -path "*/platforms/libq$platform.so" -print -quit)"
  [ -n "$plugin" ] || fail "the Qt platform plugin '$platform' is not in the bundle."
  echo "ok: ${plugin#"$bundle"/}"
done

echo "== 2. the bundled command line"
"$bundle/slimpajama" info packaged
if [ "$run_job" = 1 ]; then
  started=$(date +%s)
  "$bundle/slimpajama" run "$here/smoke-recipe.yaml"
  echo "ok: the smoke job finished in $(($(date +%s) - started)) s"
fi

echo "== 3. the desktop app under Xvfb"
# The inner script runs inside the virtual display: start the app, wait for a mapped
# window with the title, describe it, take a screenshot, quit with Ctrl+Q.
cat >"$scratch/in-x.sh" <<'EOF'
set -euo pipefail
"$BUNDLE/slimpajama-studio" >"$SCRATCH/app.log" 2>&1 &
pid=$!
started=$(date +%s)
wid=""
while [ -z "$wid" ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$SCRATCH/app.log"; echo "FAIL: the app exited before its window appeared." >&2; exit 1; }
  [ $(($(date +%s) - started)) -lt "$WAIT_S" ] || { cat "$SCRATCH/app.log"; kill "$pid"; echo "FAIL: no '$TITLE' window within $WAIT_S s." >&2; exit 1; }
  sleep 1
  wid="$(xdotool search --onlyvisible --name "^$TITLE\$" 2>/dev/null | head -n1 || true)"
done
echo "ok: window $wid '$(xdotool getwindowname "$wid")' mapped $(($(date +%s) - started)) s after start"
xwininfo -id "$wid" | grep -E "Map State|Width|Height"
xprop -id "$wid" WM_CLASS _NET_WM_PID 2>/dev/null || true
if command -v import >/dev/null; then
  sleep 3   # let the first paint (models list) land
  import -window root "$SCRATCH/screen.png" && cp "$SCRATCH/screen.png" "$SHOT" && echo "screenshot: $SHOT"
fi
xdotool windowfocus --sync "$wid" key --clearmodifiers ctrl+q
quit_at=$(date +%s)
# On leaving, the app waits up to 30 s for short workers (a model scan) to end.
while kill -0 "$pid" 2>/dev/null && [ $(($(date +%s) - quit_at)) -lt "$QUIT_S" ]; do
  sleep 1
done
if kill -0 "$pid" 2>/dev/null; then
  if xdotool search --onlyvisible --name "^$TITLE\$" >/dev/null 2>&1; then
    state="its window is still open"
  else
    state="its window closed but the process still runs"
  fi
  kill "$pid"; cat "$SCRATCH/app.log"
  echo "FAIL: the app did not quit within $QUIT_S s of Ctrl+Q ($state)." >&2; exit 1
fi
wait "$pid" && code=0 || code=$?
echo "ok: the app quit $(($(date +%s) - quit_at)) s after Ctrl+Q, exit status $code"
[ "$code" = 0 ]
EOF
BUNDLE="$bundle" SCRATCH="$scratch" TITLE="$title" WAIT_S="$wait_s" QUIT_S="$quit_s" \
SHOT="${SHOT:-$bundle/../bundle-window.png}" \
  xvfb-run -a -s "-screen 0 1280x800x24" bash "$scratch/in-x.sh"

echo "== 4. desktop entry and AppStream metadata"
desktop-file-validate "$here/linux/$app_id.desktop" && echo "ok: desktop-file-validate $app_id.desktop"
appstreamcli validate --no-net "$here/linux/$app_id.metainfo.xml"

echo "All bundle checks passed: $bundle ($(du -sh "$bundle" | cut -f1))"
