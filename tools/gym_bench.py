"""Gymnasium's single-thread step rate, for `sdac bench env` to print beside sdac-sim's.

    python tools/gym_bench.py --env HalfCheetah-v5 --env Humanoid-v5 --steps 20000 --seed 0

Prints one JSON line per task: {"env", "steps", "steps_per_s", "us_per_step"}. Uniform random
actions drawn before timing; only `env.step` calls are timed (resets are not).
"""

import argparse
import json
import time

import gymnasium as gym
import numpy as np


def steps_per_second(env_name, steps, seed):
    env = gym.make(env_name)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(steps, low.shape[0]))
    timed = 0.0
    for action in actions:
        started = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        timed += time.perf_counter() - started
        if terminated or truncated:
            env.reset()
    return steps / timed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", action="append", required=True)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for env_name in args.env:
        rate = steps_per_second(env_name, args.steps, args.seed)
        print(json.dumps({"env": env_name, "steps": args.steps, "steps_per_s": rate, "us_per_step": 1e6 / rate}), flush=True)


if __name__ == "__main__":
    main()
