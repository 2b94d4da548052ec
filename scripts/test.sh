#!/usr/bin/env bash
# The README's test command, and all that CI runs: services up, build, test.
# Arguments go to `swift test` (for example `--filter ServiceSupportTests`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
swift build --build-tests
# Last, so that the output ends with Swift's own summary lines.
swift test --skip-build "$@"
