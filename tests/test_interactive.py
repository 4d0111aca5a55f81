"""Interactive imitation: simulated interveners, DAgger / HG-DAgger / Sirius rounds, resume, sample weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clonekit.cli import main
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.windows import sample_batch
from clonekit.envs import get_env_family
from clonekit.envs.maze import AGENT, MOVES, MazeTask, MazeVecEnv, bfs_from_goal
from clonekit.errors import CheckpointError, ConfigError, DatasetError
from clonekit.evaluation import rollout, split_tasks
from clonekit.experts.collect import collect
from clonekit.interactive import (
    InteractiveConfig,
    IntervenerConfig,
    MazeIntervener,
    load_round_policy,
    run_interactive,
    segment_classes,
)
from clonekit.interactive.segments import AUTONOMOUS, DEMO, INTERVENTION, PRE_INTERVENTION, SegmentWeights
from clonekit.train import TrainConfig, train
from tests.conftest import assert_one_error_line

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
# Small and fast: an MLP on 7x7 mazes.
FAST = {"policy_overrides": {"encoder": "mlp", "hidden_sizes": [64]}, "batch_size": 64}


def corridor() -> MazeTask:
    """A 5x7 grid with one corridor along row 2 (columns 1-5); the goal at its right end."""
    walls = np.ones((5, 7), dtype=bool)
    walls[2, 1:6] = False
    return MazeTask(maze_seed=0, walls=walls, goal=(2, 5))


def corridor_obs(columns: list[int]) -> tuple[MazeVecEnv, np.ndarray]:
    """A wave of corridor episodes with the agents in ``columns`` of row 2."""
    env = MazeVecEnv([corridor()] * len(columns))
    return env, env.reset(starts=np.array([[2, c] for c in columns]))


def fresh(config: IntervenerConfig, env: MazeVecEnv, seed: int = 0) -> MazeIntervener:
    intervener = MazeIntervener(config)
    intervener.reset(env, seed)
    return intervener


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """4 training mazes of 7x7, 3 expert episodes each."""
    out = tmp_path_factory.mktemp("interactive") / "tiny"
    return collect(
        "maze", "bfs", episodes=12, seed=0, out=out, num_tasks=4, env_kwargs={"size": 7}, show_progress=False
    )


# --- interveners ----------------------------------------------------------------------------------------------
def test_threshold_rule_steps_in_by_regret() -> None:
    env, obs = corridor_obs([2, 2, 2])
    proposed = np.array([RIGHT, UP, LEFT])  # towards the goal, into a wall, away from it
    active = np.ones(3, dtype=bool)
    strict = fresh(IntervenerConfig(min_regret=1), env)
    np.testing.assert_array_equal(strict.regret(obs, proposed), [0, 1, 2])
    take, actions = strict.step(obs, proposed, active)
    np.testing.assert_array_equal(take, [False, True, True])
    np.testing.assert_array_equal(actions[take], [RIGHT, RIGHT])
    assert strict.labels_used == 2
    lenient = fresh(IntervenerConfig(min_regret=2), env)
    np.testing.assert_array_equal(lenient.step(obs, proposed, active)[0], [False, False, True])
    # An ended episode is never taken over.
    np.testing.assert_array_equal(lenient.step(obs, proposed, np.array([True, True, False]))[0], [False] * 3)


def test_stall_rule_steps_in_after_n_steps_without_progress() -> None:
    env, obs = corridor_obs([2])
    intervener = fresh(IntervenerConfig(min_regret=2, stall_steps=2), env)
    bump, active = np.array([UP]), np.ones(1, dtype=bool)
    taken = [bool(intervener.step(obs, bump, active)[0][0]) for _ in range(4)]
    assert taken == [False, False, True, True]  # no progress at the 3rd step: the stall rule fires


def test_reaction_delay_takes_over_late_and_hands_back() -> None:
    env, obs = corridor_obs([2])
    intervener = fresh(IntervenerConfig(delay=2), env)
    active = np.ones(1, dtype=bool)
    proposals = [LEFT, RIGHT, RIGHT, RIGHT, LEFT, LEFT, LEFT, LEFT]
    taken = [bool(intervener.step(obs, np.array([a]), active)[0][0]) for a in proposals]
    # Alarm at step 0, take-over 2 steps later (even though the policy recovered), then handed back; the
    # next bad proposal (step 4) is taken over at step 6 and held while the proposals stay bad.
    assert taken == [False, False, True, False, False, False, True, True]


def test_label_budget_caps_take_overs_and_labels() -> None:
    env, obs = corridor_obs([2, 3])
    intervener = fresh(IntervenerConfig(label_budget=3), env)
    bad, active = np.array([LEFT, LEFT]), np.ones(2, dtype=bool)
    assert intervener.step(obs, bad, active)[0].tolist() == [True, True]
    assert intervener.step(obs, bad, active)[0].tolist() == [True, False]  # lowest slot first
    assert intervener.step(obs, bad, active)[0].tolist() == [False, False]
    assert intervener.label(obs, active)[0].tolist() == [False, False]
    assert intervener.labels_used == 3 and intervener.labels_left == 0
    labeller = fresh(IntervenerConfig(label_budget=3), env)
    labelled, actions = labeller.label(obs, active)
    assert labelled.tolist() == [True, True] and actions.tolist() == [RIGHT, RIGHT]
    _, elsewhere = corridor_obs([1, 4])
    assert labeller.label(elsewhere, active)[0].tolist() == [True, False]
    assert labeller.labels_used == 3
    # A state labelled before is labelled again for free, even with the budget spent.
    assert labeller.label(obs, active)[0].tolist() == [True, True] and labeller.labels_used == 3


def test_expert_noise_gives_wrong_actions_at_the_set_rate_deterministically() -> None:
    env, obs = corridor_obs([2] * 4000)
    active = np.ones(4000, dtype=bool)
    always = fresh(IntervenerConfig(expert_noise=1.0), env)
    assert not (always.label(obs, active)[1] == RIGHT).any()
    noisy = fresh(IntervenerConfig(expert_noise=0.3), env, seed=5)
    actions = noisy.label(obs, active)[1]
    assert 0.27 < (actions != RIGHT).mean() < 0.33
    again = fresh(IntervenerConfig(expert_noise=0.3), env, seed=5).label(obs, active)[1]
    other = fresh(IntervenerConfig(expert_noise=0.3), env, seed=6).label(obs, active)[1]
    np.testing.assert_array_equal(actions, again)
    assert (actions != other).any()


# --- Sirius segments ------------------------------------------------------------------------------------------
def test_sirius_segment_classes_and_weights() -> None:
    flags = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    A, P, I = AUTONOMOUS, PRE_INTERVENTION, INTERVENTION  # noqa: E741
    classes = segment_classes(flags, demo=False, window=2)
    np.testing.assert_array_equal(classes, [A, A, P, P, I, I, A, P, P, I, A])
    weights = SegmentWeights(demo=1.0, autonomous=1.0, intervention=2.0, pre_intervention=0.0)
    np.testing.assert_array_equal(weights.of(classes), [1, 1, 0, 0, 2, 2, 1, 0, 0, 2, 1])
    np.testing.assert_array_equal(segment_classes(flags, demo=True, window=2), [DEMO] * len(flags))
    with pytest.raises(ConfigError, match="pre_intervention"):
        SegmentWeights(pre_intervention=-1.0)


# --- rounds ---------------------------------------------------------------------------------------------------
def _optimal(dataset: Dataset, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For steps ``rows``: (the BFS expert's action, whether the executed action moved one step closer)."""
    tasks = split_tasks(dataset.env, "train", 0, 1)
    episode = dataset.episode_index()[rows]
    task_index = dataset.episode_info("task_index")[episode]
    obs = np.asarray(dataset.gather(rows, ["obs"])["obs"])
    action = np.asarray(dataset.gather(rows, ["action"])["action"])
    best, closer = np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=bool)
    for k, (o, a, t) in enumerate(zip(obs, action, task_index, strict=True)):
        distance, direction = bfs_from_goal(tasks[t])
        r, c = np.argwhere(o[AGENT])[0]
        best[k] = direction[r, c]
        nr, nc = np.array([r, c]) + MOVES[a]
        closer[k] = distance[nr, nc] == distance[r, c] - 1
    return best, closer


def test_dagger_round_appends_expert_labels(tiny: Dataset, tmp_path: Path, one_torch_thread: None) -> None:
    config = InteractiveConfig(train_steps=20, episodes_per_round=6, beta=0.5, **FAST)
    run = run_interactive("dagger", tiny, tmp_path / "run", rounds=1, seed=0, config=config)
    data = run.dataset
    assert {"intervention", "expert_action", "round"} <= set(data.streams) and "weight" not in data.streams
    rounds = np.asarray(data.column("round"))
    assert set(rounds.tolist()) == {-1, 0} and (rounds == -1).sum() == tiny.num_steps
    new = np.flatnonzero(rounds == 0)
    best, _ = _optimal(data, new)
    np.testing.assert_array_equal(np.asarray(data.column("expert_action"))[new], best)  # every state labelled
    action, flags = np.asarray(data.column("action"))[new], np.asarray(data.column("intervention"))[new]
    np.testing.assert_array_equal(action[flags], best[flags])  # where the expert ran, its label ran
    assert 0 < flags.mean() < 1  # beta = 0.5 mixes
    # The expert labels each state once: states of the demonstrations or seen earlier reuse their label.
    obs = np.asarray(data.column("obs"))
    demo_states = {o.tobytes() for o in obs[rounds == -1]}
    fresh_states = {o.tobytes() for o in obs[new]} - demo_states
    assert run.rounds[0]["expert_labels"] == len(fresh_states) == run.expert_labels < len(new)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["rounds"] == run.rounds


def test_hg_dagger_round_flags_interventions(tiny: Dataset, tmp_path: Path, one_torch_thread: None) -> None:
    config = InteractiveConfig(train_steps=20, episodes_per_round=6, **FAST)
    run = run_interactive("hg_dagger", tiny, tmp_path / "run", rounds=1, seed=0, config=config)
    data = run.dataset
    rounds = np.asarray(data.column("round"))
    new = np.flatnonzero(rounds == 0)
    best, closer = _optimal(data, new)
    flags = np.asarray(data.column("intervention"))[new]
    expert_action = np.asarray(data.column("expert_action"))[new]
    assert flags.any() and not flags.all()  # a 20-step policy errs sometimes, not always
    np.testing.assert_array_equal(expert_action[flags], best[flags])
    assert closer.all()  # min_regret=1: every step the policy kept was a move towards the goal
    weight = np.asarray(data.column("weight"))
    np.testing.assert_array_equal(weight[new], flags.astype(np.float32))  # only interventions are labels
    np.testing.assert_array_equal(weight[rounds == -1], 1.0)
    assert run.expert_labels == int(flags.sum())


@pytest.mark.parametrize("delay", [0, 2])
def test_sirius_window_holds_the_moves_that_fired_the_rule_only_when_the_intervener_is_late(
    tiny: Dataset, tmp_path: Path, one_torch_thread: None, delay: int
) -> None:
    """Sirius's premise: the steps just before a take-over are the behaviour that caused it. With no reaction
    delay the proposal that fires the rule never runs, so every down-weighted step is a move the intervener
    approved; with a delay of 2 the fired proposals run and fall in the window."""
    config = InteractiveConfig(train_steps=20, episodes_per_round=6, delay=delay, **FAST)
    run = run_interactive("sirius", tiny, tmp_path / "run", rounds=1, seed=0, config=config)
    data = run.dataset
    new = np.flatnonzero(np.asarray(data.column("round")) == 0)
    _, closer = _optimal(data, new)
    flags = np.asarray(data.column("intervention"))[new]
    window = np.asarray(data.column("weight"))[new] == SegmentWeights().pre_intervention
    assert flags.any() and window.any()
    if delay == 0:
        assert closer[~flags].all()  # min_regret=1: every policy step that ran moved closer, the window's too
    else:
        assert not closer[window].all()  # the late take-over let wrong moves run, just before it
        assert closer[~flags & ~window].all()  # and only there: outside the window every kept move is good


def test_resume_after_a_kill_continues_and_matches_an_uninterrupted_run(
    tiny: Dataset, tmp_path: Path, one_torch_thread: None
) -> None:
    config = InteractiveConfig(train_steps=10, episodes_per_round=4, **FAST)
    whole = run_interactive("sirius", tiny, tmp_path / "whole", rounds=3, seed=1, config=config)

    class Killed(Exception):
        pass

    def kill(round_index: int, stage: str) -> None:
        if (round_index, stage) == (2, "collected"):
            raise Killed

    with pytest.raises(Killed):
        run_interactive("sirius", tiny, tmp_path / "cut", rounds=3, seed=1, config=config, hook=kill)
    state = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert [r["round"] for r in state["rounds"]] == [0, 1]
    assert Dataset.open(tmp_path / "cut" / state["dataset"]).column("round").max() == 1
    # What a kill at a worse moment leaves: round 2's dataset whole on disk but not yet named by run.json (killed
    # between writing it and the switch; here a stand-in with other content), and a writer's half-written temp.
    shutil.copytree(tmp_path / "cut" / state["dataset"], tmp_path / "cut" / "data-003")
    (tmp_path / "cut" / ".data-004.tmp-1-x" / "columns").mkdir(parents=True)
    (tmp_path / "cut" / ".data-004.tmp-1-x" / "columns" / "obs.arrow").write_bytes(b"half")
    seen: list[tuple[int, str]] = []
    resumed = run_interactive(
        "sirius", tiny, tmp_path / "cut", rounds=3, seed=1, config=config, hook=lambda i, s: seen.append((i, s))
    )
    assert seen == [(2, "trained"), (2, "collected"), (2, "appended")]  # rounds 0-1 were not redone
    assert resumed.dataset.fingerprint == whole.dataset.fingerprint
    assert resumed.rounds == whole.rounds
    assert sorted(p.name for p in (tmp_path / "cut").iterdir() if "data" in p.name) == ["data-003"]
    # Another setting is refused rather than mixed into the run.
    other = InteractiveConfig(train_steps=11, episodes_per_round=4, **FAST)
    with pytest.raises(CheckpointError, match="train_steps"):
        run_interactive("sirius", tiny, tmp_path / "cut", rounds=3, seed=1, config=other)


def test_dagger_learns_the_training_mazes_beyond_its_starting_bc(tmp_path: Path, one_torch_thread: None) -> None:
    demos = collect(
        "maze", "bfs", episodes=4, seed=3, out=tmp_path / "d", num_tasks=4, env_kwargs={"size": 7}, show_progress=False
    )
    config = InteractiveConfig(train_steps=150, episodes_per_round=24, beta=0.3, **FAST)
    run = run_interactive("dagger", demos, tmp_path / "run", rounds=3, seed=0, config=config)
    family, tasks = get_env_family("maze"), split_tasks(demos.env, "train", 0, 1)

    def success(policy: Any) -> float:
        return float(rollout(policy, family, tasks, 200, 7, {"size": 7}).success.mean())

    bc, dagger = success(load_round_policy(tmp_path / "run", 0)), success(run.policy)
    # Measured: bc 0.44, dagger 0.94 (0.75-0.94 over run seeds 0-2); with the policy's own actions as labels
    # instead of the expert's, dagger ends at 0.31-0.46.
    assert dagger >= 0.7 and dagger >= bc + 0.25, (bc, dagger)


# --- sample weights -------------------------------------------------------------------------------------------
def _weighted(path: Path, weights: np.ndarray) -> Dataset:
    """One episode of identical observations: action 0 where the weight is 0, action 1 elsewhere."""
    n = len(weights)
    streams = [
        array_stream("obs", "float32", (2,)),
        array_stream("action", "int64"),
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
        array_stream("weight", "float32"),
    ]
    spaces = {"action": {"type": "Discrete", "n": 2}}
    with DatasetWriter(path, streams, spaces=spaces) as writer:
        writer.add_episode(
            {
                "obs": np.ones((n, 2), dtype=np.float32),
                "action": (weights > 0).astype(np.int64),
                "reward": np.zeros(n),
                "terminated": np.arange(n) == n - 1,
                "truncated": np.zeros(n, dtype=bool),
                "weight": weights,
            }
        )
        return writer.close()


def test_sample_weights_draw_in_proportion_and_never_a_zero_weight(tmp_path: Path) -> None:
    weights = np.array([0, 1, 2, 0, 1, 0], dtype=np.float32)
    data = _weighted(tmp_path / "w", weights)
    batch = sample_batch(data, 6000, torch.Generator().manual_seed(0), ["action"], weights=weights)
    assert batch["action"].min() == 1  # the weight-0 steps hold action 0
    counts = np.bincount(
        sample_batch(
            data, 6000, torch.Generator().manual_seed(0), ["obs"], weights=weights, encoded={"step": np.arange(6)}
        )["step"].numpy(),
        minlength=6,
    )
    assert counts[[0, 3, 5]].sum() == 0
    assert 1.8 < counts[2] / counts[1] < 2.2 and 0.85 < counts[4] / counts[1] < 1.15


def test_training_with_sample_weights_ignores_zero_weight_steps(tmp_path: Path, one_torch_thread: None) -> None:
    weights = np.array([0, 0, 0, 1] * 8, dtype=np.float32)  # three quarters of the labels say action 0
    data = _weighted(tmp_path / "w", weights)
    config = TrainConfig(steps=40, batch_size=16, seed=0, tensorboard=False, sample_weights="weight")
    policy = train("bc", data, tmp_path / "run", config, {"hidden_sizes": [8]}, show_progress=False)
    action, _ = policy.act({"obs": torch.ones(1, 2)})
    assert action.item() == 1
    plain = train(
        "bc",
        data,
        tmp_path / "plain",
        TrainConfig(steps=40, batch_size=16, tensorboard=False),
        {"hidden_sizes": [8]},
        show_progress=False,
    )
    assert plain.act({"obs": torch.ones(1, 2)})[0].item() == 0  # uniform sampling follows the majority
    with pytest.raises(ConfigError, match="every weight is 0"):
        train(
            "bc", _weighted(tmp_path / "z", np.zeros(4, dtype=np.float32)), tmp_path / "r2", config, show_progress=False
        )
    with pytest.raises(DatasetError, match="sample_weights='missing'"):
        train("bc", data, tmp_path / "r3", TrainConfig(sample_weights="missing"), show_progress=False)


# --- CLI ------------------------------------------------------------------------------------------------------
def test_cli_runs_dagger_end_to_end(
    tiny: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    args = [
        "interactive",
        "dagger",
        "--data",
        str(tiny.path),
        "--out",
        str(tmp_path / "run"),
        "--rounds",
        "2",
        "--episodes-per-round",
        "3",
        "--seed",
        "1",
        "--set",
        "train_steps=5",
        "--set",
        "batch_size=16",
        "--set",
        "max_episode_steps=3",
        "--quiet",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "round 1:" in out and "dagger: 2 rounds" in out
    state = json.loads((tmp_path / "run" / "run.json").read_text())
    data = Dataset.open(tmp_path / "run" / state["dataset"])
    assert sorted(set(np.asarray(data.column("round")).tolist())) == [-1, 0, 1]
    played = np.asarray(data.column("round"))[data.episode_starts] >= 0
    assert played.sum() == 6 and data.episode_lengths[played].max() <= 3  # cut at max_episode_steps
    assert (tmp_path / "run" / "policies" / "round_2" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["interactive", "rlhf"], "unknown interactive method 'rlhf'"),
        (["interactive", "dagger", "--set", "beta=2"], "beta"),
        (["interactive", "dagger", "--set", "bogus=1"], "bogus"),
    ],
)
def test_cli_bad_input_is_one_error_line(
    tiny: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code = main([*args, "--data", str(tiny.path), "--out", str(tmp_path / "run"), "--rounds", "1"])
    assert_one_error_line(code, capsys.readouterr().err, needle)
    assert not (tmp_path / "run").exists()


def test_the_experiments_delay_is_the_gated_methods_intervener_and_not_the_suboptimal_ones() -> None:
    from dataclasses import replace

    from clonekit.experiments import maze_interactive
    from clonekit.experiments.interactive_compare import interactive_methods

    methods = interactive_methods(replace(maze_interactive.FULL, delay=3, subopt_delay=1))
    delays = {key: settings.get("delay") for key, (_, settings) in methods.items()}
    assert delays == {
        "dagger": None,
        "hg_dagger": 3,
        "sirius": 3,
        "sirius_uniform": 3,
        "rlif": 3,
        "hg_dagger_subopt": 1,
        "rlif_subopt": 1,
    }
    assert interactive_methods(maze_interactive.FULL)["sirius"][1] == {"delay": 0}


@pytest.mark.usefixtures("one_torch_thread")
def test_maze_interactive_compares_every_key_at_an_equal_label_budget(tmp_path: Path) -> None:
    """The experiment end to end on a tiny preset: every policy key, labels within the budget and the same for
    every interactive method's demonstrations, curves per round, the report and the plot."""
    from dataclasses import replace

    from clonekit.experiments import maze_interactive
    from clonekit.experiments.interactive_compare import interactive_methods

    config = replace(
        maze_interactive.QUICK,
        maze_size=7,
        train_mazes=6,
        test_mazes=6,
        demo_episodes=6,
        label_budget=30,
        rounds=1,
        episodes_per_round=6,
        dagger_episodes_per_round=3,
        train_steps=10,
        eval_episodes=6,
        curve_episodes=6,
        lr_schedule="cosine",
    )
    results = maze_interactive.run(tmp_path, 0, True, show_progress=False, log=lambda _: None, config=config)
    assert list(results["metrics"]) == ["bc", *interactive_methods(config)]
    trainings = [tmp_path / "runs" / "bc", *(tmp_path / "runs").glob("*/policies/round_*")]
    assert len(trainings) == 1 + 2 * len(interactive_methods(config))  # bc, and rounds 0 and 1 of every method
    for run_dir in trainings:  # every training, bc's included, followed the experiment's schedule
        assert json.loads((run_dir / "config.json").read_text())["train_config"]["lr_schedule"] == "cosine"
    demo_labels = results["demo_labels"]
    for key, splits in results["metrics"].items():
        labels = splits["test"]["expert_labels"]["mean"]
        assert demo_labels <= labels <= demo_labels + config.label_budget, (key, labels)
        assert set(splits) == {"test", "train"} and 0 <= splits["test"]["success"]["mean"] <= 1
    for key, curve in results["curves"].items():
        assert [point["round"] for point in curve] == [0, 1], key
        assert curve[0]["expert_labels"] == demo_labels
    assert (tmp_path / "report.md").is_file() and (tmp_path / "success_vs_labels.png").is_file()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("demo_episodes", 0),
        ("label_budget", 0),
        ("rounds", 0),
        ("episodes_per_round", 0),
        ("dagger_episodes_per_round", 0),
        ("train_steps", 0),
        ("batch_size", 0),
        ("lr", 0.0),
        ("lr_schedule", "linear"),
        ("subopt_noise", 1.5),
        ("subopt_delay", -1),
        ("delay", -1),
        ("labels_per_round", 0),
    ],
)
def test_every_interactive_experiment_checks_the_settings_they_share(field: str, value: object) -> None:
    from clonekit.experiments.continuous_interactive import ContinuousInteractiveConfig
    from clonekit.experiments.gym_interactive import GymInteractiveConfig
    from clonekit.experiments.maze_interactive import MazeInteractiveConfig

    for config in (MazeInteractiveConfig, GymInteractiveConfig, ContinuousInteractiveConfig):
        with pytest.raises(ConfigError, match=field) as err:
            config(**{field: value})  # type: ignore[arg-type]
        assert "\n" not in str(err.value)
        config()  # the defaults pass


def test_labels_per_round_spreads_the_budget_over_the_rounds(
    tiny: Dataset, tmp_path: Path, one_torch_thread: None
) -> None:
    """Without a per-round cap DAgger spends its budget as its first round asks; with one, every round gets at
    most its share, and the run (and the intervener's cap) resumes from the rounds it kept."""
    settings = {"train_steps": 10, "episodes_per_round": 8, "label_budget": 40, **FAST}
    free = run_interactive("dagger", tiny, tmp_path / "free", 2, 0, InteractiveConfig(**settings))  # type: ignore[arg-type]
    assert free.rounds[0]["expert_labels"] > 4, free.rounds  # round 0 alone asks for more than a share
    config = InteractiveConfig(labels_per_round=4, **settings)  # type: ignore[arg-type]
    spread = run_interactive("dagger", tiny, tmp_path / "spread", 2, 0, config)
    assert [r["expert_labels"] for r in spread.rounds] == [4, 4], spread.rounds
    again = run_interactive("dagger", tiny, tmp_path / "spread", 3, 0, config)  # one more round, resumed
    assert [r["expert_labels"] for r in again.rounds] == [4, 4, 4]
    intervener = MazeIntervener(IntervenerConfig(label_budget=5))
    intervener.round_limit = 3
    assert intervener.labels_left == 3
    intervener.labels_used = 4
    assert intervener.labels_left == 0  # past the round's cap: nothing left, never negative
    intervener.round_limit = None
    assert intervener.labels_left == 1
    with pytest.raises(ConfigError, match="labels_per_round"):
        InteractiveConfig(labels_per_round=0)
