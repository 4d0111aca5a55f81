"""Maze experts that think aloud with different strategies: thoughts align with actions step by step, every
expert reaches the goal; thought cloning on grid observations (contract, a learning test); and a tiny
``maze-strategies`` run."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clonekit.checkpoint import load_policy
from clonekit.data import Dataset
from clonekit.envs.babyai import OBS_SIZE
from clonekit.envs.maze import ACTION_NAMES, AGENT, MOVES, MazeTask, bfs_from_goal, generate_maze
from clonekit.errors import ConfigError, DatasetError
from clonekit.evaluation.thoughts import thought_accuracy
from clonekit.experts import make_expert
from clonekit.experts.collect import collect
from clonekit.experts.maze_strategies import (
    CHOICE_ORDER,
    SHARED_VOCABULARY,
    STRATEGIES,
    VOCABULARY,
    plan_strategy,
    strategy_switches,
    thought_strategies,
)
from clonekit.policies import build_policy
from clonekit.policies.thought_cloning.grid_encoder import GridEncoder
from clonekit.policies.thought_cloning.policy import BabyAIEncoder
from clonekit.train import TrainConfig, policy_config_for, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENV = {"size": 9, "max_steps": 200}
SMALL: dict[str, Any] = {"hidden_size": 16, "embed_dim": 8, "window": 24}


def _episodes(data: Dataset) -> list[tuple[MazeTask, list[tuple[int, int]], np.ndarray, list[str], np.ndarray]]:
    """Per episode: its maze, the agent cell before each step (and after the last), actions, thoughts,
    strategy ids."""
    out = []
    for e in range(data.num_episodes):
        episode = data.episode(e)
        obs = np.asarray(episode["obs"])
        w = obs.shape[-1]
        flat = obs[:, AGENT].reshape(len(obs), -1).argmax(1)
        cells = [(int(f // w), int(f % w)) for f in flat]
        actions = np.asarray(episode["action"])
        last = cells[-1]
        cells.append((last[0] + int(MOVES[actions[-1]][0]), last[1] + int(MOVES[actions[-1]][1])))
        seed = data.env["tasks"][int(data.episode_info("task_index")[e])]["maze_seed"]
        task = generate_maze(seed, size=data.env["kwargs"]["size"], loop_fraction=data.env["kwargs"]["loop_fraction"])
        assert bool(np.asarray(episode["terminated"])[-1]), "the expert reaches the goal"
        assert cells[-1] == task.goal and all(c != task.goal for c in cells[:-1])
        out.append((task, cells, actions, list(episode["thought"]), np.asarray(episode["strategy"])))
    return out


def _collect(tmp: Path, expert: str, loop_fraction: float, **options: Any) -> Dataset:
    return collect(
        "maze",
        expert,
        episodes=12,
        seed=5,
        out=tmp / f"{expert}-{loop_fraction}-{len(options)}",
        num_tasks=6,
        env_kwargs={**ENV, "loop_fraction": loop_fraction},
        expert_kwargs=options,
        show_progress=False,
    )


def _free(task: MazeTask, cell: tuple[int, int]) -> bool:
    return not task.walls[cell]


def _unvisited(task: MazeTask, cell: tuple[int, int], visited: set[tuple[int, int]]) -> list[int]:
    moves = [(a, (cell[0] + int(MOVES[a][0]), cell[1] + int(MOVES[a][1]))) for a in range(4)]
    return [a for a, nxt in moves if _free(task, nxt) and nxt not in visited]


@pytest.mark.parametrize("loop_fraction", [0.2, 0.9])
def test_bfs_thoughts_follow_the_shortest_path(tmp_path: Path, loop_fraction: float) -> None:
    for task, cells, _, thoughts, strategy in _episodes(_collect(tmp_path, "bfs-thoughts", loop_fraction)):
        distance, _ = bfs_from_goal(task)
        assert set(thoughts) == {"follow shortest path"} and (strategy == STRATEGIES.index("bfs")).all()
        assert all(distance[b] == distance[a] - 1 for a, b in itertools.pairwise(cells))


@pytest.mark.parametrize("expert", ["dfs-thoughts", "greedy-thoughts"])
def test_exploration_thoughts_check_junctions_and_backtrack_along_the_visited_path(tmp_path: Path, expert: str) -> None:
    seen: set[str] = set()
    for loop_fraction in (0.0, 0.2):
        for task, cells, actions, thoughts, _ in _episodes(_collect(tmp_path, expert, loop_fraction)):
            path, visited = [cells[0]], {cells[0]}
            backtracking = False
            for t, (thought, action) in enumerate(zip(thoughts, actions, strict=True)):
                here, nxt = cells[t], cells[t + 1]
                options = _unvisited(task, here, visited)
                words = thought.split()
                seen.add(" ".join(words[:2]))
                if thought in ("dead end go back", "stuck go back") or words[0] == "backtrack":
                    # Nothing left to explore here, and the move returns along the visited path; "backtrack"
                    # continues a return that a dead end started.
                    assert not options and len(path) >= 2 and nxt == path[-2], (thought, here, nxt)
                    assert backtracking == (words[0] == "backtrack"), thought
                    if backtracking:
                        assert words[1] == ACTION_NAMES[action]
                    path.pop()
                    backtracking = True
                    continue
                backtracking = False
                assert nxt not in visited and action in options, (thought, here, nxt)
                if thought == "check goal ahead":
                    assert nxt == task.goal
                elif words[0] == "check":  # dfs: verify at a junction before committing to the first way
                    assert len(options) >= 2 and words[1] == ACTION_NAMES[action] == ACTION_NAMES[options[0]]
                elif words[0] == "explore":
                    assert options == [action]
                elif words[:2] == ["move", "closer"]:  # greedy
                    assert words[2] == ACTION_NAMES[action]
                    assert abs(nxt[0] - task.goal[0]) + abs(nxt[1] - task.goal[1]) < abs(here[0] - task.goal[0]) + abs(
                        here[1] - task.goal[1]
                    )
                else:
                    assert words[0] == "detour" and words[1] == ACTION_NAMES[action], thought
                visited.add(nxt)
                path.append(nxt)
    dead_end = "dead end" if expert == "dfs-thoughts" else "stuck go"
    assert dead_end in seen and any(k.startswith("backtrack") for k in seen), seen
    assert ("check up" in seen or "check down" in seen) if expert == "dfs-thoughts" else "detour" in str(seen), seen


LEFT_OF = {0: 2, 2: 1, 1: 3, 3: 0}  # up -> left -> down -> right -> up
RIGHT_OF = {b: a for a, b in LEFT_OF.items()}


def test_wall_following_keeps_the_wall_on_its_left(tmp_path: Path) -> None:
    turns = set()
    for task, cells, actions, thoughts, strategy in _episodes(_collect(tmp_path, "wall-thoughts", 0.0)):
        assert (strategy == STRATEGIES.index("wall")).all()
        heading = 0  # up
        for t, (thought, action) in enumerate(zip(thoughts, actions, strict=True)):
            left = (cells[t][0] + int(MOVES[LEFT_OF[heading]][0]), cells[t][1] + int(MOVES[LEFT_OF[heading]][1]))
            if thought == "keep left wall turn left":
                assert action == LEFT_OF[heading] and _free(task, left)
            else:  # the left cell is a wall: straight, else right, else back
                assert not _free(task, left), (thought, cells[t])
                expected = {
                    "keep left wall go straight": heading,
                    "wall ahead turn right": RIGHT_OF[heading],
                    "dead end turn around": LEFT_OF[LEFT_OF[heading]],
                }
                assert action == expected[thought], thought
            assert cells[t + 1] != cells[t]  # never bumps into a wall
            turns.add(thought)
            heading = int(action)
    assert {"keep left wall turn left", "keep left wall go straight", "wall ahead turn right"} <= turns


def test_the_chooser_runs_the_shortest_successful_strategy_and_names_it(tmp_path: Path) -> None:
    plain = _episodes(_collect(tmp_path, "choose-thoughts", 0.2))
    named = _episodes(_collect(tmp_path, "choose-thoughts", 0.2, prefix_thoughts=True))
    chosen = set()
    for (task, cells, actions, thoughts, strategy), (_, cells2, _, named_thoughts, _) in zip(plain, named, strict=True):
        assert cells == cells2 and len(set(strategy.tolist())) == 1
        name = STRATEGIES[int(strategy[0])]
        chosen.add(name)
        plans = {s: plan_strategy(s, task, cells[0], 200) for s in STRATEGIES}
        shortest = min(len(p.actions) for p in plans.values() if p.success)
        assert len(actions) == shortest == len(plans[name].actions) and list(actions) == plans[name].actions
        # Ties go to the strategy that searches least.
        assert name == next(s for s in CHOICE_ORDER if plans[s].success and len(plans[s].actions) == shortest)
        assert named_thoughts == [f"{name} {t}" for t in thoughts]
    assert len(chosen) >= 2, chosen


def test_the_random_chooser_runs_a_drawn_successful_strategy_whole_and_replays_from_its_seed(tmp_path: Path) -> None:
    plain = _episodes(_collect(tmp_path, "choose-thoughts", 0.0, choice="random"))
    named = _episodes(_collect(tmp_path / "named", "choose-thoughts", 0.0, choice="random", prefix_thoughts=True))
    again = _episodes(_collect(tmp_path / "again", "choose-thoughts", 0.0, choice="random"))
    chosen, longer = [], 0
    for (task, cells, actions, thoughts, strategy), (_, cells2, _, named_thoughts, _), (_, cells3, *_) in zip(
        plain, named, again, strict=True
    ):
        assert cells == cells2 == cells3 and len(set(strategy.tolist())) == 1  # same draws, whole episodes
        name = STRATEGIES[int(strategy[0])]
        chosen.append(name)
        plan = plan_strategy(name, task, cells[0], 200)
        assert plan.success and list(actions) == plan.actions and thoughts == plan.thoughts
        assert named_thoughts == [f"{name} {t}" for t in thoughts]
        longer += len(actions) > len(plan_strategy("bfs", task, cells[0], 200).actions)
    # Perfect mazes: the draws differ from the shortest choice, and some episodes are not shortest paths.
    assert len(set(chosen)) >= 3 and longer >= 2, (chosen, longer)
    with pytest.raises(ConfigError, match="choice: expected one of"):
        make_expert("maze", "choose-thoughts", choice="best")
    with pytest.raises(ConfigError, match="only the 'choose' expert chooses"):
        make_expert("maze", "dfs-thoughts", choice="random")


@pytest.mark.parametrize("expert", [f"{s}-thoughts" for s in STRATEGIES])
def test_shared_vocabulary_narrates_the_same_steps_in_words_that_hide_the_strategy(tmp_path: Path, expert: str) -> None:
    """Same episodes as the strategy's own words (whose alignment the tests above check), each thought the shared
    wording of the same rule with the move's direction; no word tells the strategies apart."""
    own = _episodes(_collect(tmp_path, expert, 0.0))
    shared = _episodes(_collect(tmp_path, expert, 0.0, shared_vocabulary=True))
    used = set()
    for (_, cells, actions, thoughts, strategy), (_, cells2, actions2, shared_thoughts, strategy2) in zip(
        own, shared, strict=True
    ):
        assert cells == cells2 and list(actions) == list(actions2) and list(strategy) == list(strategy2)
        name = STRATEGIES[int(strategy[0])]
        for thought, said, action in zip(thoughts, shared_thoughts, actions, strict=True):
            direction = ACTION_NAMES[action]
            # The rule behind the strategy's own thought, and the shared wording of that rule, for this move.
            rule = next(p for p in VOCABULARY[name] if p.replace("DIR", direction) == thought)
            assert said == VOCABULARY[name][rule].replace("DIR", direction) and said.endswith(direction), said
            assert VOCABULARY[name][rule] in SHARED_VOCABULARY and thought_strategies(said) == frozenset(STRATEGIES)
            used.add(VOCABULARY[name][rule])
    assert used == ({"go DIR"} if name == "bfs" else set(SHARED_VOCABULARY)), used


def test_thought_strategies_and_switches_on_hand_made_thoughts() -> None:
    assert thought_strategies("follow shortest path") == {"bfs"}
    assert thought_strategies("move closer up") == {"greedy"} == thought_strategies("greedy detour left")
    assert thought_strategies("wall ahead turn right") == {"wall"} == thought_strategies("wall wall ahead turn right")
    assert thought_strategies("dfs check left not visited") == {"dfs"}
    assert thought_strategies("backtrack down") == {"dfs", "greedy"} == thought_strategies("check goal ahead")
    assert thought_strategies("go back up") == set(STRATEGIES) == thought_strategies("bfs check left")
    for nonsense in ("move closer", "explore sideways", ""):
        assert thought_strategies(nonsense) == set()

    def switches(*thoughts: str) -> int:
        return strategy_switches([thought_strategies(t) for t in thoughts])

    assert switches() == 0 and switches("follow shortest path", "follow shortest path") == 0
    # Words two strategies share join either side: dfs -> (dfs or greedy) -> greedy is one change, not two.
    assert switches("explore up", "backtrack down", "check goal ahead", "move closer left") == 1
    assert switches("move closer up", "keep left wall turn left", "move closer up", "follow shortest path") == 3
    assert switches("explore up", "garbled words", "explore left") == 0  # no vocabulary: skipped
    assert switches("go up", "check left", "go back down") == 0  # the shared vocabulary: nothing to switch

    from clonekit.experiments.maze_strategies import commitment

    episodes = [
        ["greedy move closer up", "greedy backtrack left", "dfs backtrack left"],  # words: one; names: a switch
        ["bfs follow shortest path", "bfs move closer up", "greedy wall ahead turn right"],  # words: two switches
        ["bfs go up", "garbled"],
        ["bfs explore up", "", "bfs explore left"],
    ]
    success, groups = np.array([True, False, True, False]), np.array([0, 0, 1, 1])
    words, names = commitment(episodes, success, groups, 0), commitment(episodes, success, groups, 0, named=True)
    assert words["strategy_switches"]["mean"] == 0.5 and words["one_strategy"]["mean"] == 0.75
    assert words["success_one_strategy"]["mean"] == 2 / 3 and words["success_switched"]["mean"] == 0.0
    assert words["off_vocabulary"]["mean"] == pytest.approx((0 + 0 + 1 / 2 + 1 / 3) / 4)
    assert names["named_switches"]["mean"] == 0.5 and names["one_named_strategy"]["mean"] == 0.5
    assert names["success_one_named_strategy"]["mean"] == 0.5 and names["success_named_switched"]["n"] == 2


def test_expert_names_and_options(tmp_path: Path) -> None:
    expert = make_expert("maze", "strategies", strategy="greedy")
    assert expert.strategy == "greedy"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="strategy: expected one of"):
        make_expert("maze", "strategies", strategy="astar")


@pytest.fixture(scope="module")
def maze_thoughts(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Chooser demonstrations with named strategies on 3 small mazes (24 episodes, 132 steps, 11 thoughts)."""
    out = tmp_path_factory.mktemp("strategies") / "data"
    return collect(
        "maze",
        "choose-thoughts",
        episodes=24,
        seed=0,
        out=out,
        num_tasks=3,
        env_kwargs={"size": 7},
        expert_kwargs={"prefix_thoughts": True},
        show_progress=False,
    )


@pytest.mark.parametrize("name", ["thought_cloning", "recurrent_bc"])
def test_grid_thought_cloning_save_load_gives_identical_actions(
    name: str, maze_thoughts: Dataset, tmp_path: Path
) -> None:
    config = TrainConfig(steps=6, batch_size=8, seed=3, checkpoint_every=5, tensorboard=False)
    policy = train(name, maze_thoughts, tmp_path / "run", config, policy_overrides=SMALL, show_progress=False)
    assert isinstance(policy.encoder, GridEncoder)
    loaded = load_policy(tmp_path / "run")
    rows = np.linspace(0, maze_thoughts.num_steps - 1, 5).astype(np.int64)
    obs = {"obs": torch.from_numpy(maze_thoughts.gather(rows, ["obs"])["obs"])}
    with torch.inference_mode():
        state_a, state_b = policy.initial_state(5), loaded.initial_state(5)
        for _ in range(3):
            a, state_a = policy.act(obs, state_a)
            b, state_b = loaded.act(obs, state_b)
            torch.testing.assert_close(a, b, rtol=0, atol=0)
            assert policy.thoughts(state_a) == loaded.thoughts(state_b)


def test_the_observation_shape_picks_the_encoder(maze_thoughts: Dataset) -> None:
    grid = build_policy("thought_cloning", policy_config_for("thought_cloning", maze_thoughts, SMALL))
    assert isinstance(grid.encoder, GridEncoder)
    babyai = build_policy("thought_cloning", {"obs_shape": [OBS_SIZE], "num_actions": 7, "thought_vocab": ["go"]})
    assert isinstance(babyai.encoder, BabyAIEncoder)
    with pytest.raises(ConfigError, match=r"obs_shape: expected .*\(C, H, W\)"):
        build_policy("thought_cloning", {"obs_shape": [4, 4], "num_actions": 4, "thought_vocab": ["go"]})


def test_grid_thought_cloning_learns_the_teachers_thoughts(maze_thoughts: Dataset, tmp_path: Path) -> None:
    config = TrainConfig(steps=150, batch_size=8, lr=1e-2, seed=0, checkpoint_every=1000, tensorboard=False)
    overrides = {"hidden_size": 64, "embed_dim": 16, "window": 16}
    policy = train("thought_cloning", maze_thoughts, tmp_path / "tc", config, overrides, show_progress=False)
    accuracy = thought_accuracy(policy, maze_thoughts)
    # Replayed on the training episodes, memory carried. One constant thought (what it generates after 100 of
    # these steps) scores 0.17; measured here after 120 steps 0.62, 200 steps 0.91 (actions 0.97-1.0).
    assert len(set(maze_thoughts.column("thought"))) >= 8
    assert accuracy["thought_accuracy"].mean() >= 0.45, accuracy["thought_accuracy"].mean()
    assert accuracy["action_accuracy"].mean() >= 0.9, accuracy["action_accuracy"].mean()


def test_tiny_maze_strategies_experiment_writes_results(tmp_path: Path) -> None:
    from clonekit.experiments import maze_strategies

    config = replace(
        maze_strategies.QUICK,
        size=7,
        train_mazes=4,
        episodes=12,
        test_mazes=3,
        eval_episodes=6,
        steps=3,
        batch_size=4,
        hidden_size=16,
        window=16,
    )
    results = maze_strategies.run(tmp_path, seed=0, quick=True, show_progress=False, log=lambda m: None, config=config)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert results["experiment"] == "maze-strategies" and set(results["metrics"]) == set(maze_strategies.KEYS)
    for key, splits in results["metrics"].items():
        assert set(splits) == {"test", "ood"}
        for cell in splits.values():
            assert cell["success"]["n"] == 6 and cell["success"]["n_tasks"] == 3
            assert ("strategy_accuracy" in cell) == (key == "tc_strategy")
            assert ("success_committed" in cell) == (key == "tc_strategy")
    assert results["metrics"]["tc_strategy"]["ood"]["strategy_accuracy"]["n"] == 6
    assert results["metrics"]["tc_strategy"]["ood"]["strategy_majority"]["n"] == 6
    assert abs(sum(results["teacher"]["train_choices"].values()) - 1) < 1e-9
    assert results["metrics"]["tc_strategy"]["ood"]["success_committed"]["n"] == 6
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# maze-strategies") and "(thought control `commit`): test " in report
    assert len(maze_strategies.success_table(results)) == 3
    for key, splits in results["metrics"].items():
        for cell in splits.values():
            n = cell["one_strategy"]["n"]
            assert n == 6 and ("one_named_strategy" in cell) == (key == "tc_strategy")
            assert sum(cell[s]["n"] for s in ("success_one_strategy", "success_switched") if s in cell) == n
    # tc_single only knows bfs's words: it cannot switch.
    assert results["metrics"]["tc_single"]["ood"]["strategy_switches"]["mean"] == 0
    with pytest.raises(DatasetError, match="collected with other settings"):  # another vocabulary, same --out
        maze_strategies.run(tmp_path, 0, True, False, lambda m: None, replace(config, shared_vocabulary=True))
    with pytest.raises(DatasetError, match="collected with other settings"):  # another teacher, same --out
        maze_strategies.run(tmp_path, 0, True, False, lambda m: None, replace(config, teacher_choice="random"))
    with pytest.raises(ConfigError, match="teacher_choice"):
        replace(config, teacher_choice="best")
