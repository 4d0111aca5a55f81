"""Collection speed on Ray with 1 worker vs 2 workers, same episodes (prints one JSON line).

The maze with the BFS expert is CPU-bound (a search per maze, per-step label maps), so two workers on two
free cores should collect nearly twice as fast; this process still writes every episode itself (about a
quarter of the local CPU time per episode), which caps the gain. One local Ray instance with 2 CPUs; both
workers are warmed up (clonekit imported) before timing. ``one_worker_episodes_per_s`` / ``two_workers_episodes_per_s``:
episodes per second of ``collect(..., ray=True, workers=N)`` (writing included); ``ratio`` = 2 / 1;
``local_episodes_per_s``: the same collection without Ray, for reference. Every run writes the same
dataset (the fingerprints are checked).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from clonekit.distributed import init_ray
from clonekit.experts.collect import collect

EPISODES = 1536
BATCH_SIZE = 96  # 16 batches = 16 Ray tasks
MAZE = {"size": 24}
REPEATS = 2


def _timed(out: Path, **options: object) -> tuple[float, str]:
    start = time.perf_counter()
    dataset = collect(
        "maze",
        "bfs",
        episodes=EPISODES,
        seed=0,
        out=out,
        num_tasks=50,
        env_kwargs=MAZE,
        batch_size=BATCH_SIZE,
        overwrite=True,
        show_progress=False,
        **options,  # type: ignore[arg-type]
    )
    return EPISODES / (time.perf_counter() - start), dataset.fingerprint


def main() -> None:
    ray = init_ray(None, workers=2)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        _timed(out, ray=True, workers=2)  # warm-up: start both workers
        rates: dict[str, float] = {}
        fingerprints = set()
        for _ in range(REPEATS):  # interleaved, best of REPEATS each (the cores may be shared)
            for key, options in (
                ("local", {}),
                ("one", {"ray": True, "workers": 1}),
                ("two", {"ray": True, "workers": 2}),
            ):
                rate, fingerprint = _timed(out, **options)
                rates[key] = max(rates.get(key, 0.0), rate)
                fingerprints.add(fingerprint)
    ray.shutdown()
    assert len(fingerprints) == 1, fingerprints
    print(
        json.dumps(
            {
                "one_worker_episodes_per_s": round(rates["one"], 1),
                "two_workers_episodes_per_s": round(rates["two"], 1),
                "ratio": round(rates["two"] / rates["one"], 3),
                "local_episodes_per_s": round(rates["local"], 1),
                "episodes": EPISODES,
                "batch_size": BATCH_SIZE,
            }
        )
    )


if __name__ == "__main__":
    main()
