#!/usr/bin/env bash
# Install headless Chromium for the report's browser test (idempotent; Debian/Ubuntu via apt).
#
# tests/test_report_browser.py drives Chromium over the DevTools pipe with the standard library
# only, so nothing else is needed. It looks for `chromium` (or chromium-browser, google-chrome) on
# PATH, or the binary named by $MEDALLION_CHROMIUM.
#
# Usage: scripts/setup_browser.sh        (as root, or with sudo available)
set -euo pipefail

for candidate in "${MEDALLION_CHROMIUM:-}" chromium chromium-browser google-chrome; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1; then
        echo "setup_browser: $(command -v "$candidate") is installed: $("$candidate" --version 2>/dev/null || echo 'version unknown')"
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser: no apt-get here; install Chromium with your package manager and put it on PATH" \
        "(or set MEDALLION_CHROMIUM to its path)" >&2
    exit 1
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "setup_browser: run as root or install sudo to apt-get install chromium" >&2
        exit 1
    fi
fi

echo "setup_browser: installing chromium with apt-get"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
echo "setup_browser: $(command -v chromium): $(chromium --version 2>/dev/null || echo 'installed')"
