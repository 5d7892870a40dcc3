#!/usr/bin/env bash
# Debian's Chromium + ChromeDriver for tests/test_demo_browser.py (the demo page in headless Chromium).
# Idempotent and quiet; never fails by itself: without a browser that test skips with its reason, or fails
# under CI (CI=true), where this script is expected to have installed it. VRFER_SKIP_BROWSER: skip it everywhere.
set -u
if [ -n "${VRFER_SKIP_BROWSER:-}" ]; then
    echo "browser-deps: skipped (VRFER_SKIP_BROWSER is set; the browser test skips)"
    exit 0
fi
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "browser-deps: $(chromium --version 2>/dev/null | head -1) and chromedriver already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser-deps: no apt-get here; install Chromium and ChromeDriver yourself (the browser test skips; under CI=true it fails)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "browser-deps: not root and no passwordless sudo; skipping (the browser test skips; under CI=true it fails)"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if timeout 600 $SUDO apt-get update -qq >/tmp/browser-deps.log 2>&1 \
   && timeout 900 $SUDO apt-get install -y -qq chromium chromium-driver >>/tmp/browser-deps.log 2>&1; then
    echo "browser-deps: installed $(chromium --version 2>/dev/null | head -1)"
else
    echo "browser-deps: apt-get failed (see /tmp/browser-deps.log); the browser test will skip (under CI=true: fail)"
    tail -3 /tmp/browser-deps.log 2>/dev/null | sed 's/^/browser-deps:   /'
fi
exit 0
