#!/usr/bin/env bash
# Validates contracts/ (schemas, examples, openapi.yaml, asyncapi.yaml): see scripts/check_contracts.py.
# Installs the pinned Python packages (requirements-test.txt) when one is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"
if ! "$python" -c 'import jsonschema, rfc3339_validator, referencing, yaml, openapi_spec_validator, asyncapi3' 2>/dev/null; then
    echo "check-contracts: installing requirements-test.txt" >&2
    "$python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements-test.txt" >&2
fi
exec "$python" "$here/check_contracts.py" "$@"
