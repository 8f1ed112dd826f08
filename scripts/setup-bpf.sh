#!/usr/bin/env bash
# setup-bpf.sh: make this machine able to load rauta's eBPF observer (bpf/observer.c).
#
# Role: idempotent set-up for the observer's tests and `rauta observe`:
#   1. Debian packages python3-bpfcc, bpfcc-tools, linux-headers-amd64 (apt-get update only
#      when the first install attempt fails);
#   2. /lib/modules/$(uname -r)/{build,source} -> the newest /usr/src/linux-headers-*-amd64
#      and its -common half (Debian splits the headers; bcc needs both);
#   3. tracefs mounted on /sys/kernel/tracing (tracepoints need it);
#   4. the venv's bcc shim: <venv>/bcc-shim/bcc -> /usr/lib/python3/dist-packages/bcc and
#      a .pth naming that directory (exposes bcc only, not the rest of dist-packages).
# Rules: never fails the build: without root or apt it prints why and exits 0 (the
# observer tests then skip with the reason). Usage: scripts/setup-bpf.sh [VENV] (default .venv).
set -u
VENV="${1:-.venv}"
say() { echo "setup-bpf: $*"; }

if [ "$(id -u)" != 0 ]; then say "not root: skipping (observer tests will skip)"; exit 0; fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    say "no apt-get/dpkg: skipping (observer tests will skip)"; exit 0
fi

PKGS="python3-bpfcc bpfcc-tools linux-headers-amd64"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends $missing >/tmp/setup-bpf-apt.log 2>&1; then
        say "install failed, running apt-get update first"
        apt-get update >>/tmp/setup-bpf-apt.log 2>&1
        if ! apt-get install -y --no-install-recommends $missing >>/tmp/setup-bpf-apt.log 2>&1; then
            say "apt-get install failed (see /tmp/setup-bpf-apt.log): skipping"; exit 0
        fi
    fi
fi

B="$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$B" ]; then say "no /usr/src/linux-headers-*-amd64: skipping"; exit 0; fi
M="/lib/modules/$(uname -r)"
mkdir -p "$M"
[ "$(readlink "$M/build" 2>/dev/null)" = "$B" ] || ln -sfn "$B" "$M/build"
[ "$(readlink "$M/source" 2>/dev/null)" = "${B%-amd64}-common" ] || ln -sfn "${B%-amd64}-common" "$M/source"

if ! mountpoint -q /sys/kernel/tracing; then
    mount -t tracefs tracefs /sys/kernel/tracing || say "could not mount tracefs (tracepoints will be unavailable)"
fi

if [ -d "$VENV" ]; then
    VENV="$(cd "$VENV" && pwd)"
    mkdir -p "$VENV/bcc-shim"
    ln -sfn /usr/lib/python3/dist-packages/bcc "$VENV/bcc-shim/bcc"
    for sp in "$VENV"/lib/python3*/site-packages; do
        [ -d "$sp" ] && echo "$VENV/bcc-shim" >"$sp/bcc-dist.pth"
    done
    if "$VENV/bin/python" -c 'import bcc' 2>/dev/null; then say "ok: bcc importable from $VENV"
    else say "warning: $VENV/bin/python cannot import bcc"; fi
else
    say "no venv at $VENV: packages, headers and tracefs done, shim skipped"
fi
exit 0
