#!/usr/bin/env bash
# Checks that the Swift sources follow .swift-format (swift-nio's style: 4 spaces, 120 columns, ordered
# imports). Prints what to change and exits 1 when they do not; changes nothing.
# To fix in place: swift format format --in-place --parallel --recursive Package.swift Sources Tests
set -euo pipefail
cd "$(dirname "$0")/.."

swift format lint --strict --parallel --recursive Package.swift Sources Tests
echo "format-check: ok"
