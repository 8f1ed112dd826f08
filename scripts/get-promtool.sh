#!/usr/bin/env bash
# Get promtool (it checks deploy/prometheus/rauta-alerts.yaml) from Debian's `prometheus`
# package without installing the package: `apt-get download` the .deb and extract only
# usr/bin/promtool into a cache directory OUTSIDE the repo, keyed by the package version.
# Installing the package would also set up (and may start) a Prometheus server.
#
# Idempotent: a promtool already in the cache is used as is. Uses promtool from PATH when
# there is one. Needs apt-get (Debian/Ubuntu); `apt-get update` runs once if the package
# is unknown (root only).
#
#   RAUTA_LAB_CACHE   cache root (default: $HOME/.cache/rauta-lab)
#
# On success the last line printed is PROMTOOL=<path>.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  echo "get-promtool: using $(command -v promtool)"
  echo "PROMTOOL=$(command -v promtool)"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "get-promtool: no apt-get here" >&2; exit 3; }

candidate() { apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
VERSION="$(candidate)"
if [ -z "$VERSION" ] || [ "$VERSION" = "(none)" ]; then
  [ "$(id -u)" = 0 ] || { echo "get-promtool: package prometheus unknown; run apt-get update as root" >&2; exit 3; }
  apt-get update -q >/dev/null
  VERSION="$(candidate)"
fi
[ -n "$VERSION" ] && [ "$VERSION" != "(none)" ] || { echo "get-promtool: no prometheus package" >&2; exit 3; }

CACHE="${RAUTA_LAB_CACHE:-$HOME/.cache/rauta-lab}"
OUT="$CACHE/promtool-${VERSION//[^A-Za-z0-9.+-]/_}"
if [ ! -x "$OUT/bin/promtool" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -q "prometheus=$VERSION" >/dev/null)
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$OUT/bin"
  cp "$tmp/x/usr/bin/promtool" "$OUT/bin/.promtool.tmp"
  mv -f "$OUT/bin/.promtool.tmp" "$OUT/bin/promtool"
  echo "get-promtool: extracted promtool from prometheus $VERSION"
else
  echo "get-promtool: promtool $VERSION cached"
fi
"$OUT/bin/promtool" --version 2>&1 | head -1
echo "PROMTOOL=$OUT/bin/promtool"
