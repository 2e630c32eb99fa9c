#!/usr/bin/env bash
# The Python packages the tests use, in the git-ignored venv `.cache/venv`: Cyclone DDS (the
# third-party ROS 2 middleware of the interoperability test, tools/cyclone_peer.py), onnx and
# onnxruntime (ONNX export checks), safetensors and numpy (artifact cross-checks), mcap (reading
# recordings back). Idempotent: a second run only checks. Tests that need a package say so and
# fail when it is missing; nothing in the product runs Python.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.cache/venv"
packages=(cyclonedds==11.0.1 onnx onnxruntime safetensors numpy mcap)

if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv"; then
        # Debian ships venv's pip bootstrap separately.
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            apt-get install -y -qq python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv"
        else
            echo "setup-python: python3 -m venv failed; install python3-venv" >&2
            exit 1
        fi
    fi
fi
if "$venv/bin/python" - "${packages[@]}" <<'PY'
import importlib.metadata as md, sys
for spec in sys.argv[1:]:
    name, _, version = spec.partition("==")
    try:
        installed = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(1)
    if version and installed != version:
        sys.exit(1)
PY
then
    echo "setup-python: ${packages[*]} already in $venv"
else
    "$venv/bin/pip" install --quiet "${packages[@]}"
    echo "setup-python: installed ${packages[*]} into $venv"
fi
