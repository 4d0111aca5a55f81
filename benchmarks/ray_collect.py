"""Collection speed on Ray with 1 worker vs 2 workers, same episodes (one JSON line per env).

Envs: the maze with the BFS expert, and BabyAI (PutNextS5N2) with the bot when minigrid is installed. The
maze with the BFS expert is CPU-bound (a search per maze, per-step label maps), so two workers on two
free cores should collect nearly twice as fast; this process still writes every episode itself (about a
quarter of the local CPU time per episode), which caps the gain. One local Ray instance with 2 CPUs; both
workers are warmed up (clonekit imported) before timing. ``one_worker_episodes_per_s`` / ``two_workers_episodes_per_s``:
episodes per second of ``collect(..., ray=True, workers=N)`` (writing included); ``ratio`` = 2 / 1;
``local_episodes_per_s``: the same collection without Ray, for reference. Every run writes the same
dataset (the fingerprints are checked).
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from clonekit.distributed import init_ray
from clonekit.experts.collect import collect

BATCH_SIZE = 96  # 16 batches = 16 Ray tasks
REPEATS = 2
# env -> (expert, env options, episodes)
ENVS: dict[str, tuple[str, dict[str, Any], int]] = {
    "maze": ("bfs", {"size": 24}, 1536),
    "babyai": ("bot", {"level": "BabyAI-PutNextS5N2-v0"}, 1536),
}


def _timed(env: str, out: Path, **options: object) -> tuple[float, str]:
    expert, env_kwargs, episodes = ENVS[env]
    start = time.perf_counter()
    dataset = collect(
        env,
        expert,
        episodes=episodes,
        seed=0,
        out=out,
        num_tasks=50,
        env_kwargs=env_kwargs,
        batch_size=BATCH_SIZE,
        overwrite=True,
        show_progress=False,
        **options,  # type: ignore[arg-type]
    )
    return episodes / (time.perf_counter() - start), dataset.fingerprint


def main() -> None:
    ray = init_ray(None, workers=2)
    for env in ENVS:
        if env == "babyai" and importlib.util.find_spec("minigrid") is None:
            continue
        _measure(env)
    ray.shutdown()


def _measure(env: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        _timed(env, out, ray=True, workers=2)  # warm-up: start both workers
        rates: dict[str, float] = {}
        fingerprints = set()
        for _ in range(REPEATS):  # interleaved, best of REPEATS each (the cores may be shared)
            for key, options in (
                ("local", {}),
                ("one", {"ray": True, "workers": 1}),
                ("two", {"ray": True, "workers": 2}),
            ):
                rate, fingerprint = _timed(env, out, **options)
                rates[key] = max(rates.get(key, 0.0), rate)
                fingerprints.add(fingerprint)
    assert len(fingerprints) == 1, fingerprints
    print(
        json.dumps(
            {
                "env": env,
                "one_worker_episodes_per_s": round(rates["one"], 1),
                "two_workers_episodes_per_s": round(rates["two"], 1),
                "ratio": round(rates["two"] / rates["one"], 3),
                "local_episodes_per_s": round(rates["local"], 1),
                "episodes": ENVS[env][2],
                "batch_size": BATCH_SIZE,
            }
        )
    )


if __name__ == "__main__":
    main()
