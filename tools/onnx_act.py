#!/usr/bin/env python3
"""A policy's ONNX graph in onnxruntime, on the CSV files `sdac act` reads and writes.

  onnx_act.py act --model P.onnx --obs OBS.csv --noise NOISE.csv --out ACTIONS.csv
  onnx_act.py check --model P.onnx

`act` runs the graph on every row at once (batch = rows) and writes the actions with the header
a_0..; `check` runs onnx.checker.check_model(full_check=True) and prints the metadata entry
`sdac_policy`. Needs: onnx, onnxruntime, numpy (.cache/venv, see tools/setup-python.sh).
"""

import argparse
import json
import sys

import numpy as np


def read_rows(path, prefix):
    with open(path) as f:
        header = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.strip()]
    if any(not name.startswith(prefix + "_") for name in header):
        sys.exit(f"{path}: header must be {prefix}_0,{prefix}_1,...")
    return np.array(rows, dtype=np.float32).reshape(len(rows), len(header))


def metadata(model):
    entries = {p.key: p.value for p in model.metadata_props}
    if "sdac_policy" not in entries:
        sys.exit("the model has no sdac_policy metadata")
    return json.loads(entries["sdac_policy"])


def act(args):
    import onnx
    import onnxruntime

    meta = metadata(onnx.load(args.model))
    obs = read_rows(args.obs, "obs")
    noise = read_rows(args.noise, "noise").reshape(len(obs), meta["n_noise"], meta["act_dim"])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        args.model, options, providers=["CPUExecutionProvider"]
    )
    (action,) = session.run(["action"], {"obs": obs, "noise": noise})
    with open(args.out, "w") as f:
        f.write(",".join(f"a_{i}" for i in range(action.shape[1])) + "\n")
        for row in action:
            f.write(",".join(repr(float(v)) for v in row) + "\n")


def check(args):
    import onnx

    model = onnx.load(args.model)
    onnx.checker.check_model(model, full_check=True)
    meta = metadata(model)
    print(f"ok: opset {model.opset_import[0].version}, ir {model.ir_version}, "
          f"{meta['sampler']['kind']} with {len(meta['sampler']['timesteps'])} steps")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("act")
    run.add_argument("--model", required=True)
    run.add_argument("--obs", required=True)
    run.add_argument("--noise", required=True)
    run.add_argument("--out", required=True)
    chk = sub.add_parser("check")
    chk.add_argument("--model", required=True)
    args = parser.parse_args()
    {"act": act, "check": check}[args.command](args)


if __name__ == "__main__":
    main()
