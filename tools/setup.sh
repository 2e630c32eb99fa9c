#!/usr/bin/env bash
# One-step setup on a fresh machine (Debian, root or sudo): system packages the build needs
# (protoc), MuJoCo 3.17.0 and Gymnasium's MJCF task models from their PyPI wheels into the
# git-ignored cache folder `.cache/third_party/`, and the tests' Python packages in `.cache/venv`
# (tools/setup-python.sh). Idempotent: a second run only checks.
#
#   .cache/third_party/mujoco/lib/libmujoco.so{,.3.17.0}   linked by mujoco-rs (see .cargo/config.toml)
#   .cache/third_party/mujoco/include/                      MuJoCo's C headers
#   .cache/third_party/gymnasium/assets/*.xml               Gymnasium v5 task models
set -euo pipefail

MUJOCO_VERSION=3.17.0
GYMNASIUM_VERSION=1.2.2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/.cache/third_party"
stamp="$cache/.done-mujoco-$MUJOCO_VERSION-gymnasium-$GYMNASIUM_VERSION"

# candle-onnx compiles the ONNX protobuf definitions at build time.
if ! command -v protoc >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq protobuf-compiler
    else
        echo "setup: protoc is needed to build candle-onnx; install protobuf-compiler" >&2
        exit 1
    fi
fi

if [ -f "$stamp" ] && [ -f "$cache/mujoco/lib/libmujoco.so" ] && [ -f "$cache/gymnasium/assets/half_cheetah.xml" ]; then
    echo "setup: MuJoCo $MUJOCO_VERSION and Gymnasium $GYMNASIUM_VERSION assets already in $cache"
else
    if ! command -v python3 >/dev/null; then
        echo "setup: python3 with pip is needed to download the MuJoCo and Gymnasium wheels" >&2
        exit 1
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
        -d "$work" "mujoco==$MUJOCO_VERSION"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        -d "$work" "gymnasium==$GYMNASIUM_VERSION"
    rm -rf "$cache/mujoco" "$cache/gymnasium"
    mkdir -p "$cache/mujoco/lib" "$cache/gymnasium/assets"
    python3 - "$work" "$cache" <<'PY'
import glob, os, shutil, sys, zipfile
work, cache = sys.argv[1], sys.argv[2]
(mj,) = glob.glob(os.path.join(work, "mujoco-*.whl"))
(gym,) = glob.glob(os.path.join(work, "gymnasium-*.whl"))
with zipfile.ZipFile(mj) as z:
    for name in z.namelist():
        if name.startswith("mujoco/libmujoco.so"):
            with z.open(name) as src, open(os.path.join(cache, "mujoco/lib", os.path.basename(name)), "wb") as dst:
                shutil.copyfileobj(src, dst)
        elif name.startswith("mujoco/include/") and not name.endswith("/"):
            out = os.path.join(cache, "mujoco", name[len("mujoco/"):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
prefix = "gymnasium/envs/mujoco/assets/"
with zipfile.ZipFile(gym) as z:
    for name in z.namelist():
        if name.startswith(prefix) and name.endswith(".xml"):
            with z.open(name) as src, open(os.path.join(cache, "gymnasium/assets", name[len(prefix):]), "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
    lib=$(cd "$cache/mujoco/lib" && ls libmujoco.so.* | head -n 1)
    ln -sf "$lib" "$cache/mujoco/lib/libmujoco.so"
    touch "$stamp"
    echo "setup: MuJoCo $MUJOCO_VERSION -> $cache/mujoco, Gymnasium $GYMNASIUM_VERSION assets -> $cache/gymnasium/assets"
fi

# The Python packages the tests cross-check against (Cyclone DDS, onnxruntime, ...).
bash "$root/tools/setup-python.sh"
