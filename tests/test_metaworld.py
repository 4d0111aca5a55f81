"""The Meta-World env family, its scripted expert, collection and a tiny metaworld-mt run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from clonekit.envs import ENVS, get_env_family
from clonekit.envs.metaworld import BASE_OBS_SIZE, INSTALL_HINT, MetaWorldTask, make_env, place
from clonekit.errors import ConfigError
from clonekit.experiments.metaworld_mt import MetaWorldMTConfig, run
from clonekit.experts import make_expert
from clonekit.experts.collect import collect

NAMES = ["reach-v3", "drawer-open-v3"]


def test_spaces_tasks_and_disjoint_splits() -> None:
    family = get_env_family("metaworld")
    obs, act = family.spaces(task_names=NAMES)
    assert obs.shape == (BASE_OBS_SIZE + 2,) and act.shape == (4,)
    assert family.spaces(task="assembly-v3")[0].shape == (BASE_OBS_SIZE,)  # one task: no one-hot
    train = family.sample_tasks(0, "train", 10, set(), task_names=NAMES)
    assert [t.name for t in train] == NAMES * 5
    assert train == family.sample_tasks(0, "train", 10, set(), task_names=NAMES)  # reproducible from the seed
    assert train != family.sample_tasks(1, "train", 10, set(), task_names=NAMES)
    keys = {family.task_key(t) for t in train}
    test = family.sample_tasks(0, "test", 40, keys, task_names=NAMES)
    assert len({family.task_key(t) for t in test}) == 40 and not keys & {family.task_key(t) for t in test}
    for task in train[:2]:
        assert family.task_from_json(json.loads(json.dumps(family.task_to_json(task))), task_names=NAMES) == task
    with pytest.raises(ConfigError, match="not a Meta-World v3 environment"):
        family.spaces(task="reach-v9")
    with pytest.raises(ConfigError, match="unknown option"):
        family.spaces(level="reach-v3")
    with pytest.raises(ConfigError, match="not among the env's tasks"):
        family.task_from_json({"task": "assembly-v3", "seed": 3}, task_names=NAMES)


def test_missing_metaworld_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "metaworld" in ENVS  # listed even where the package is missing
    monkeypatch.setitem(sys.modules, "metaworld", None)  # makes `import metaworld` fail
    with pytest.raises(ConfigError) as info:
        get_env_family("metaworld").spaces(task="reach-v3")
    assert str(info.value) == INSTALL_HINT


def test_pooled_env_replays_a_fresh_one() -> None:
    env = make_env("pick-place-v3", 5)
    first, _ = env.reset()
    place(env, 77)
    moved, _ = env.reset()
    fresh, _ = make_env("pick-place-v3", 77).reset()
    assert np.array_equal(moved, fresh) and not np.allclose(first[-3:], moved[-3:])  # other goal, same as fresh


def test_scripted_expert_succeeds_in_a_batched_rollout() -> None:
    family = get_env_family("metaworld")
    kwargs = {"task_names": NAMES, "max_steps": 150}
    tasks = family.sample_tasks(3, "test", 4, set(), **kwargs)
    vec = family.make_vec(tasks, **kwargs)
    expert = make_expert("metaworld", "scripted")
    obs = vec.reset()
    expert.reset(vec)
    assert obs.shape == (4, BASE_OBS_SIZE + 2) and obs.dtype == np.float32
    assert np.array_equal(obs[:, BASE_OBS_SIZE:], np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])
    ended_at = np.full(4, -1)
    for step in range(150):
        action, _ = expert.act(obs)
        obs, reward, terminated, truncated = vec.step(action)
        assert np.array_equal(vec.step_success(), terminated)  # an episode ends the step it succeeds
        ended_at[terminated] = step
        if vec.done.all():
            break
    assert vec.succeeded.all() and (ended_at > 10).all(), ended_at  # reach and drawer-open: 4/4 within 150 steps
    frozen = obs.copy()
    obs, reward, terminated, truncated = vec.step(np.zeros((4, 4), dtype=np.float32))
    assert np.array_equal(obs, frozen) and not (reward.any() or terminated.any() or truncated.any())


def test_collect_through_the_library(tmp_path: Path) -> None:
    dataset = collect(
        "metaworld",
        "scripted",
        episodes=2,
        seed=0,
        out=tmp_path / "data",
        num_tasks=2,
        env_kwargs={"task_names": NAMES, "max_steps": 150},
        show_progress=False,
    )
    assert dataset.num_episodes == 2
    assert dataset.env["tasks"] == [{"task": t.name, "seed": t.seed} for t in _train_tasks(2)]
    for i, name in enumerate(NAMES):
        episode = dataset.episode(i)
        obs, action = np.asarray(episode["obs"]), np.asarray(episode["action"])
        assert obs.dtype == np.float32 and obs.shape[1] == BASE_OBS_SIZE + 2
        assert (obs[:, BASE_OBS_SIZE + NAMES.index(name)] == 1).all()
        assert action.shape == (len(obs), 4) and np.abs(action).max() <= 1
        terminated = np.asarray(episode["terminated"])
        assert terminated[-1] and not terminated[:-1].any()  # ended by success, before the limit


def _train_tasks(count: int) -> list[MetaWorldTask]:
    return get_env_family("metaworld").sample_tasks(0, "train", count, set(), task_names=NAMES)


def test_tiny_metaworld_mt_run(tmp_path: Path) -> None:
    config = MetaWorldMTConfig(
        task_names=tuple(NAMES),
        demos_per_task=2,
        test_seeds_per_task=2,
        max_steps=70,
        mlp_steps=20,
        gmm_steps=20,
        diffusion_steps=20,
        batch_size=32,
        hidden_sizes=(16,),
        denoising_steps=2,
        chunk=2,
        execute_steps=1,
    )
    results = run(tmp_path, seed=0, quick=True, show_progress=False, log=lambda *a: None, config=config)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["metrics"] == json.loads(json.dumps(results["metrics"]))
    assert list(written["metrics"]) == ["expert", "mlp", "gmm", "diffusion", "diffusion_chunked"]
    for splits in written["metrics"].values():
        assert set(splits) == {"test", "test:reach-v3", "test:drawer-open-v3"}
        assert splits["test"]["success"]["n"] == 4 and splits["test"]["success"]["n_tasks"] == 2
    # The expert within 70 steps: reach always (35-60 steps); drawer-open needs about 90, so never.
    assert written["metrics"]["expert"]["test:reach-v3"]["success"]["mean"] == 1.0
    assert written["metrics"]["expert"]["test:drawer-open-v3"]["success"]["mean"] == 0.0
    assert written["demonstrations"]["episodes"] == 4
    report = (tmp_path / "report.md").read_text()
    assert "| expert | 0.50" in report and "2/2" in report
    assert (tmp_path / "success_per_task.png").stat().st_size > 0
    again = run(tmp_path, seed=0, quick=True, show_progress=False, log=lambda *a: None, config=config)  # resumes
    assert again["metrics"] == results["metrics"]
