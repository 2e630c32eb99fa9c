"""Record the Gymnasium v5 episodes that `tests/tests/gym_parity.rs` replays in Rust.

    .cache/venv/bin/python tools/make_fixtures.py [--out tests/fixtures/gym_v5]

For every task: uniform random episodes (seeds 0, 1, ...) until the task has at least 200
recorded steps and an episode that ends the way the task can end (a fall for tasks with a
healthy range, the time limit for the others); plus, for the legged tasks, one long episode of
small actions. Each case is a folder <Env>/<case>/ with init.csv (the state after
`reset(seed)`), actions.csv and trace.csv (see tools/gym_trace.py), listed in manifest.json.
Deterministic: the same versions (tools/requirements.txt) write the same files.
"""

import argparse
import json
import os
import shutil
import warnings

import gymnasium as gym
import numpy as np

from gym_trace import replay, write_trace

TASKS = [
    "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5", "HumanoidStandup-v5",
    "Swimmer-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5", "Pusher-v5",
]
# Tasks with a healthy range must show a fall; the others must show the time limit.
TERMINATING = {"Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5"}
# Long episodes of small actions: contacts and gait over hundreds of steps.
GENTLE = {"Hopper-v5": 300, "Walker2d-v5": 300, "Ant-v5": 300, "Humanoid-v5": 200}
MIN_STEPS = 200
# HumanoidStandup never terminates and its 348 observations make a 1000-step trace 4.5 MB.
MAX_STEPS = {"HumanoidStandup-v5": 250}


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(repr(float(x)) for x in row) + "\n")


def record(env_name, case, seed, action_scale, max_steps, out_dir):
    env = gym.make(env_name)
    env.reset(seed=seed)
    data = env.unwrapped.data
    qpos, qvel = data.qpos.copy(), data.qvel.copy()
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    actions = rng.uniform(low, high, size=(max_steps, low.shape[0])) * action_scale
    rows, ended = replay(env_name, qpos, qvel, actions)
    actions = actions[: len(rows)]

    case_dir = os.path.join(out_dir, env_name, case)
    os.makedirs(case_dir, exist_ok=True)
    write_csv(os.path.join(case_dir, "init.csv"),
              [f"qpos_{i}" for i in range(len(qpos))] + [f"qvel_{i}" for i in range(len(qvel))],
              [list(qpos) + list(qvel)])
    write_csv(os.path.join(case_dir, "actions.csv"), [f"a_{i}" for i in range(low.shape[0])], actions)
    write_trace(os.path.join(case_dir, "trace.csv"), rows)
    policy = "uniform random" if action_scale == 1.0 else f"uniform random x {action_scale}"
    return {"env": env_name, "case": case, "seed": seed, "steps": len(rows), "ended": ended, "policy": policy}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join("tests", "fixtures", "gym_v5"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for task in TASKS:
        shutil.rmtree(os.path.join(args.out, task), ignore_errors=True)

    manifest = []
    for task in TASKS:
        wanted_ending = "terminated" if task in TERMINATING else "truncated"
        max_steps = MAX_STEPS.get(task, 1000)
        cases = []
        for seed in range(100):
            total = sum(c["steps"] for c in cases)
            if total >= MIN_STEPS and (any(c["ended"] == wanted_ending for c in cases) or task in MAX_STEPS):
                break
            cases.append(record(task, f"random_seed{seed}", seed, 1.0, max_steps, args.out))
        if task in GENTLE:
            cases.append(record(task, "gentle_seed100", 100, 0.2, GENTLE[task], args.out))
        manifest.extend(cases)
        summary = ", ".join(f"{c['case']} {c['steps']} {c['ended']}" for c in cases)
        print(f"{task}: {summary}")

    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
