"""Replay an action sequence in Gymnasium from a given MuJoCo state and write the step trace.

The same file formats as `sdac env replay`, so the two traces can be compared line by line:

    python tools/gym_trace.py --env Hopper-v5 --init INIT.csv --actions ACTIONS.csv --out TRACE.csv

- INIT.csv: header qpos_0..qpos_{nq-1},qvel_0..qvel_{nv-1}, one row (the state after a reset);
- ACTIONS.csv: header a_0..a_{d-1}, one row per step, environment units;
- TRACE.csv: header step,reward,terminated,truncated,obs_0..; step counts from 1, flags 0/1;
  the replay stops after the first terminated or truncated step, or when the actions run out.

Versions are pinned in tools/requirements.txt (Gymnasium 1.2.2, MuJoCo 3.17.0).
"""

import argparse
import csv
import sys

import gymnasium as gym
import numpy as np


def read_rows(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [[float(x) for x in row] for row in reader if row]
    return header, rows


def replay(env_name, qpos, qvel, actions):
    """Steps `env_name` from (qpos, qvel) with `actions`; returns (rows, how the episode ended)."""
    env = gym.make(env_name)
    env.reset(seed=0)
    env.unwrapped.set_state(np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64))
    rows = []
    for step, action in enumerate(actions, start=1):
        obs, reward, terminated, truncated, _ = env.step(np.asarray(action, dtype=np.float64))
        rows.append((step, float(reward), int(terminated), int(truncated), obs))
        if terminated:
            return rows, "terminated"
        if truncated:
            return rows, "truncated"
    return rows, "actions_exhausted"


def write_trace(path, rows):
    obs_dim = len(rows[0][4]) if rows else 0
    with open(path, "w") as f:
        f.write(",".join(["step", "reward", "terminated", "truncated"] + [f"obs_{i}" for i in range(obs_dim)]))
        f.write("\n")
        for step, reward, terminated, truncated, obs in rows:
            # 12 significant digits: far below the 1e-5 parity tolerance, a third smaller than repr.
            cells = [str(step), f"{reward:.12g}", str(terminated), str(truncated)]
            cells += [f"{float(x):.12g}" for x in obs]
            f.write(",".join(cells))
            f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True)
    parser.add_argument("--init", required=True)
    parser.add_argument("--actions", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    env = gym.make(args.env)
    nq, nv = env.unwrapped.model.nq, env.unwrapped.model.nv
    _, init_rows = read_rows(args.init)
    if len(init_rows) != 1 or len(init_rows[0]) != nq + nv:
        sys.exit(f"{args.init}: expected one row of {nq} qpos and {nv} qvel values")
    _, actions = read_rows(args.actions)
    rows, ended = replay(args.env, init_rows[0][:nq], init_rows[0][nq:], actions)
    write_trace(args.out, rows)
    print(f"{args.env}: {len(rows)} steps, {ended}", file=sys.stderr)


if __name__ == "__main__":
    main()
