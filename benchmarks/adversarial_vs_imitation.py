"""clonekit's GAIL and AIRL vs the ``imitation`` library's, on the same demonstrations, env and env-step budget.

The clonekit side is the ``adversarial-il`` experiment (:mod:`clonekit.experiments.adversarial_il`): for each of
its seed folders this script exports the exact expert transitions that the experiment's ``gail`` and ``airl``
runs trained on (subsampled CartPole-v1 steps, ``s'`` the step after each) and plays the runs' final greedy
actors. The ``imitation`` side (imitation 1.0.1, which pins gymnasium 0.29 and Stable-Baselines3 2.2, against
clonekit's gymnasium 1.4) runs in its own venv on those exported transitions, with the same env-step budget
and PPO settings (8 envs x 128 steps, 4 epochs of 4 minibatches, lr 3e-4, gamma 0.99, GAE 0.95, MLP 64x64),
``n_disc_updates_per_round`` = the experiment's ``disc_updates``, and imitation's own defaults otherwise
(``BasicRewardNet`` / ``BasicShapedRewardNet`` with ``RunningNorm`` inputs, discriminator Adam lr 1e-3;
``demo_batch_size`` = all exported transitions, since imitation draws batches without replacement). GAIL's
reward is ``-log(1 - D)`` on both sides; imitation's AIRL trains its generator on the shaped ``f(s, a, s')``,
clonekit's on ``softplus(f - log pi)`` (the experiment's ``reward: positive``). Both sides are evaluated here
with a plain gymnasium loop on the same ``--episodes`` reset seeds.

Steps (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/clonekit run adversarial-il --seeds 0-2 --out EXP
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adversarial_vs_imitation.py clonekit --experiment EXP
    OMP_NUM_THREADS=1 .imitation-venv/bin/python benchmarks/adversarial_vs_imitation.py imitation --experiment EXP

Each prints one JSON line per (library, method, seed) and appends it to ``EXP/imitation_benchmark.jsonl``:
``mean_return`` and ``success`` (return >= 475) over the episodes, and for imitation the training ``seconds``.

The imitation venv (made once; torch is shared with clonekit's venv through a ``.pth`` file, so no second
torch is downloaded; pip leaves clonekit's own packages alone, "outside environment")::

    python3 -m venv .imitation-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > .imitation-venv/lib/python3.11/site-packages/clonekit_torch.pth
    .imitation-venv/bin/pip install imitation==1.0.1 "numpy<2"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ENV_ID = "CartPole-v1"
EVAL_SEED = 10_000
SUCCESS_RETURN = 475.0
METHODS = ("gail", "airl")


def evaluate(act: Any, episodes: int) -> dict[str, float]:
    """Mean return and success of ``act(obs (D,)) -> action`` over ``episodes`` reset seeds from ``EVAL_SEED``."""
    import gymnasium

    env = gymnasium.make(ENV_ID)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(np.asarray(obs, np.float32)))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    values = np.asarray(returns)
    return {"mean_return": float(values.mean()), "success": float((values >= SUCCESS_RETURN).mean())}


def seed_dirs(experiment: Path) -> list[Path]:
    """The experiment's per-seed folders (``seed_S``), or the folder itself for a single-seed run."""
    found = sorted(experiment.glob("seed_*"))
    return found or [experiment]


def emit(experiment: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with open(experiment / "imitation_benchmark.jsonl", "a", encoding="utf-8") as out:
        out.write(line + "\n")


def clonekit_side(experiment: Path, episodes: int) -> None:
    """Export each seed's expert transitions (per method) and evaluate the experiment's gail and airl actors."""
    import gymnasium
    import torch

    from clonekit.checkpoint import load_policy
    from clonekit.config import config_from_json
    from clonekit.data import Dataset
    from clonekit.rl.adversarial import AdversarialConfig, expert_transitions

    for folder in seed_dirs(experiment):
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        for method in METHODS:
            run = folder / "runs" / method
            provenance = json.loads((run / "adversarial.json").read_text(encoding="utf-8"))
            config = config_from_json(AdversarialConfig, provenance["adversarial_config"], str(run))
            demos = Dataset.open(config.demos)
            expert = expert_transitions(demos, method, gymnasium.spaces.Discrete(2), config.subsample, config.seed)
            assert expert.actions is not None
            np.savez(
                folder / f"imitation_{method}_demos.npz",
                obs=expert.obs.numpy(),
                acts=expert.actions.numpy(),
                next_obs=expert.next_obs.numpy(),
                dones=expert.terminated.numpy(),
                total_steps=config.ppo().num_iterations * config.ppo().batch_size,
                disc_updates=config.disc_updates,
                seed=config.seed,
            )
            policy = load_policy(run)

            def act(obs: np.ndarray, policy: Any = policy) -> int:
                with torch.no_grad():
                    return int(policy.act({"obs": torch.from_numpy(obs)[None]})[0][0])

            emit(
                experiment,
                {
                    "library": "clonekit",
                    "method": method,
                    "seed": results["seed"],
                    "transitions": len(expert.obs),
                    "episodes": episodes,
                    **evaluate(act, episodes),
                },
            )


def imitation_side(experiment: Path, episodes: int) -> None:
    """Train imitation's GAIL and AIRL on each exported demo file and evaluate them."""
    import imitation
    import torch
    from imitation.algorithms.adversarial.airl import AIRL
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.data import types
    from imitation.data.wrappers import RolloutInfoWrapper
    from imitation.rewards.reward_nets import BasicRewardNet, BasicShapedRewardNet
    from imitation.util import logger as imitation_logger
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO
    from stable_baselines3.ppo import MlpPolicy

    for folder in seed_dirs(experiment):
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        for method in METHODS:
            data = np.load(folder / f"imitation_{method}_demos.npz")
            seed = int(data["seed"])
            torch.manual_seed(seed)
            transitions = types.Transitions(
                obs=data["obs"],
                acts=data["acts"],
                infos=np.array([{}] * len(data["obs"])),
                next_obs=data["next_obs"],
                dones=data["dones"],
            )
            venv = make_vec_env(
                ENV_ID,
                rng=np.random.default_rng(seed),
                n_envs=8,
                post_wrappers=[lambda env, _: RolloutInfoWrapper(env)],
            )
            learner = PPO(
                env=venv,
                policy=MlpPolicy,
                n_steps=128,
                batch_size=256,
                n_epochs=4,
                learning_rate=3e-4,
                gamma=0.99,
                gae_lambda=0.95,
                ent_coef=0.0,
                seed=seed,
                device="cpu",
            )
            net_class = BasicRewardNet if method == "gail" else BasicShapedRewardNet
            reward_net = net_class(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
            algorithm = GAIL if method == "gail" else AIRL
            trainer = algorithm(
                demonstrations=transitions,
                demo_batch_size=len(data["obs"]),
                n_disc_updates_per_round=int(data["disc_updates"]),
                venv=venv,
                gen_algo=learner,
                reward_net=reward_net,
                allow_variable_horizon=True,
                custom_logger=imitation_logger.configure(format_strs=[]),  # no tables on stdout: JSON lines only
            )
            began = time.perf_counter()
            trainer.train(int(data["total_steps"]))
            seconds = time.perf_counter() - began
            venv.close()

            def act(obs: np.ndarray, learner: Any = learner) -> int:
                return int(learner.predict(obs, deterministic=True)[0])

            emit(
                experiment,
                {
                    "library": f"imitation {imitation.__version__}",
                    "method": method,
                    "seed": results["seed"],
                    "transitions": len(data["obs"]),
                    "episodes": episodes,
                    "total_steps": int(data["total_steps"]),
                    "seconds": round(seconds, 1),
                    **evaluate(act, episodes),
                },
            )


def main() -> None:
    """Parse the arguments and run one side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("side", choices=("clonekit", "imitation"))
    parser.add_argument("--experiment", type=Path, required=True, help="an adversarial-il output folder")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes (reset seeds) per run")
    args = parser.parse_args()
    if not args.experiment.is_dir():
        sys.exit(f"error: --experiment {args.experiment}: not a folder")
    if args.side == "clonekit":
        clonekit_side(args.experiment, args.episodes)
    else:
        imitation_side(args.experiment, args.episodes)


if __name__ == "__main__":
    main()
