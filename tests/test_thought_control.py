"""Overthinking control at decision time (clonekit.policies.thought_cloning.control) on a tiny trained TC:
the default is the policy bit for bit, sticky holds thoughts, rerank acts on one of its candidates and changes
its mind less than greedy decoding, and bad specs are one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import minigrid  # noqa: F401  (in .[dev]: a missing install fails the module, it is not skipped)
import numpy as np
import pytest
import torch

from clonekit.cli import main
from clonekit.data import Dataset
from clonekit.envs import get_env_family
from clonekit.errors import ConfigError
from clonekit.evaluation.thoughts import overthinking, thought_rollout
from clonekit.experiments.common import torch_threads
from clonekit.experts.collect import collect
from clonekit.policies import Policy
from clonekit.policies.thought_cloning import ThoughtCloningPolicy
from clonekit.policies.thought_cloning.control import (
    ControlledThoughtPolicy,
    GroupedControlPolicy,
    ThoughtControl,
    parse_thought_control,
)
from clonekit.train import TrainConfig, train
from tests.conftest import assert_one_error_line

LEVEL = "BabyAI-PutNextS5N2-v0"


@pytest.fixture(scope="module")
def tiny_tc(tmp_path_factory: pytest.TempPathFactory) -> tuple[ThoughtCloningPolicy, Dataset, Path]:
    """TC (hidden 24) trained for 200 steps on 12 bot episodes of PutNextS5N2: it has learned enough to change
    its thought along an episode, and flip-flops (measured on the replayed episodes: 0.23 changes per step,
    0.22 of them A -> B -> A; the bot 0.33 and none)."""
    out = tmp_path_factory.mktemp("control")
    data = collect(
        "babyai", "bot", episodes=12, seed=0, out=out / "data", num_tasks=12, env_kwargs={"level": LEVEL},
        show_progress=False,
    )  # fmt: skip
    config = TrainConfig(steps=200, batch_size=6, lr=1e-2, seed=0, checkpoint_every=1000, tensorboard=False)
    with torch_threads(1):
        policy = train(
            "thought_cloning", data, out / "tc", config, {"hidden_size": 24, "embed_dim": 8, "window": 16},
            show_progress=False,
        )  # fmt: skip
    assert isinstance(policy, ThoughtCloningPolicy)
    return policy.eval(), data, out / "tc"


def _replay(policy: Policy, data: Dataset) -> tuple[list[torch.Tensor], list[list[str]], list[torch.Tensor]]:
    """The bot's episodes replayed through ``policy`` (memory carried): actions and states per step, thoughts
    per episode."""
    starts, lengths = data.episode_starts, data.episode_lengths
    state = policy.initial_state(len(starts))
    actions: list[torch.Tensor] = []
    states: list[torch.Tensor] = []
    thoughts: list[list[str]] = [[] for _ in starts]
    with torch.inference_mode(), torch_threads(1):
        for t in range(int(lengths.max())):
            rows = starts + np.minimum(t, lengths - 1)
            action, state = policy.act({"obs": torch.from_numpy(data.gather(rows, ["obs"])["obs"])}, state)
            actions.append(action)
            inner = state[0] if isinstance(policy, ControlledThoughtPolicy) else state
            states.append(torch.cat([*inner[:4], inner[4].float()], 1))
            for episode, thought in enumerate(policy.thoughts(state)):  # type: ignore[operator]
                if t < lengths[episode]:
                    thoughts[episode].append(thought)
    return actions, thoughts, states


def test_default_control_is_the_policy_bit_for_bit(tiny_tc: tuple[ThoughtCloningPolicy, Dataset, Path]) -> None:
    policy, data, _ = tiny_tc
    plain_actions, plain_thoughts, plain_states = _replay(policy, data)
    controlled = ControlledThoughtPolicy(policy)
    actions, thoughts, states = _replay(controlled, data)
    assert thoughts == plain_thoughts
    for step, (a, b, s, p) in enumerate(zip(actions, plain_actions, states, plain_states, strict=True)):
        assert torch.equal(a, b) and torch.equal(s, p), step
    assert controlled.cost()["decoder_sequences_per_step"] == 1.0


def test_sticky_with_a_huge_margin_never_changes_its_thought(
    tiny_tc: tuple[ThoughtCloningPolicy, Dataset, Path],
) -> None:
    policy, data, _ = tiny_tc
    greedy = overthinking(_replay(policy, data)[1])["thought_changes_per_step"].mean()
    assert greedy >= 0.15, greedy  # the greedy policy does change its mind (measured 0.23)
    controlled = ControlledThoughtPolicy(policy, parse_thought_control("sticky:1e9"))
    thoughts = _replay(controlled, data)[1]
    assert all(len(set(episode)) == 1 for episode in thoughts), thoughts
    assert controlled.cost()["decoder_sequences_per_step"] == 3.0  # decoded, then it and the held one scored


def test_rerank_acts_on_one_of_its_candidates_and_changes_its_mind_less(
    tiny_tc: tuple[ThoughtCloningPolicy, Dataset, Path],
) -> None:
    policy, data, _ = tiny_tc
    controlled = ControlledThoughtPolicy(policy, ThoughtControl("rerank", candidates=4, penalty=3.0))
    starts, lengths = data.episode_starts, data.episode_lengths
    state = controlled.initial_state(len(starts))
    with torch.inference_mode(), torch_threads(1):
        for t in range(6):
            obs = torch.from_numpy(data.gather(starts + np.minimum(t, lengths - 1), ["obs"])["obs"])
            _, upper = policy.think(obs, state[0])
            saved = controlled.generator.get_state()
            candidates = controlled.candidates(upper[0], policy.generate_thought(upper[0]), state[0][4])
            controlled.generator.set_state(saved)  # act draws the same samples
            _, state = controlled.act({"obs": obs}, state)
            chosen = state[0][4]
            assert (candidates == chosen[:, None]).all(2).any(1).all(), t
    assert candidates.shape[1] == 6  # greedy, 4 sampled, the previous thought
    greedy = overthinking(_replay(policy, data)[1])
    controlled = ControlledThoughtPolicy(policy, ThoughtControl("rerank", candidates=4, penalty=3.0))
    reranked = overthinking(_replay(controlled, data)[1])
    # Measured: changes per step 0.23 greedy -> 0.08 reranked; flip-flops per change 0.22 -> 0.0.
    before, after = greedy["thought_changes_per_step"].mean(), reranked["thought_changes_per_step"].mean()
    assert after <= 0.6 * before, (before, after)
    assert reranked["flip_flop_rate"].mean() <= 0.5 * greedy["flip_flop_rate"].mean()
    assert controlled.cost()["decoder_sequences_per_step"] == 11.0  # greedy and 4 sampled decoded, 6 scored


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("ponder", "expected greedy, sticky"),
        ("sticky:wide", "margin must be a number"),
        ("sticky:-1", "margin: expected >= 0"),
        ("rerank:0", "candidates: expected in [1, 64]"),
        ("rerank:4:1:2", "expected greedy, sticky"),
        ("patience:5:2", "changes: expected in [1, window=2]"),
        ("commit:go:to", "expected greedy, sticky"),
        ("commit:two words", "word: expected one word"),
    ],
)
def test_bad_spec_is_one_config_error_line(
    spec: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_thought_control(spec)
    message = str(raised.value)
    assert "\n" not in message and needle in message and repr(spec) in message, message
    code = main(["eval", str(tmp_path), "--thought-control", spec])
    assert_one_error_line(code, capsys.readouterr().err, "--thought-control", needle)


def test_cli_eval_with_thought_control_reports_the_cost(
    tiny_tc: tuple[ThoughtCloningPolicy, Dataset, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, run = tiny_tc
    args = ["eval", str(run), "--episodes", "1", "--tasks", "1", "--thought-control", "sticky:1", "--json", "--quiet"]
    with torch_threads(1):
        code = main(args)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    out = json.loads(printed.out.strip().splitlines()[-1])
    assert out["thought_control"] == "sticky:1" and out["decoder_sequences_per_step"] == 3.0
    assert {"success", "thought_changes_per_step", "flip_flop_rate"} <= set(out["metrics"])
    with pytest.raises(ConfigError, match="expected a thought_cloning policy"):
        ControlledThoughtPolicy(torch.nn.Linear(1, 1))  # type: ignore[arg-type]


def test_grouped_controls_play_as_each_control_alone(tiny_tc: tuple[ThoughtCloningPolicy, Dataset, Path]) -> None:
    """One rollout of every setting side by side (GroupedControlPolicy, as babyai-overthinking plays them) gives
    each setting's episodes exactly as its own ControlledThoughtPolicy rollout does, rerank's samples included,
    and counts each setting's decoder cost as that wrapper does."""
    policy, _, _ = tiny_tc
    family = get_env_family("babyai")
    tasks = family.sample_tasks(0, "test", 6, set(), level=LEVEL)
    ood = family.sample_tasks(0, "test", 4, set(), level="BabyAI-PutNextS6N3-v0")
    controls = [
        ThoughtControl("sticky", margin=0.5, seed=3),
        ThoughtControl("rerank", candidates=3, penalty=0.5, seed=3),
        ThoughtControl("patience", changes=1, window=3),
        ThoughtControl("greedy"),
        ThoughtControl("commit"),
    ]
    groups = [(control, split) for control in controls for split in (tasks, ood)]
    short = {"level": LEVEL, "max_steps": 12}  # episodes cut at 12 steps keep the test fast
    grouped = GroupedControlPolicy(policy, [(control, len(split)) for control, split in groups])
    everything = [task for _, split in groups for task in split]
    with torch_threads(1):
        together = thought_rollout(grouped, family, everything, len(everything), 0, short, 256)
        for (control, split), rows, cost in zip(groups, grouped.slices, grouped.cost(), strict=True):
            alone = ControlledThoughtPolicy(policy, control)
            played = thought_rollout(alone, family, split, len(split), 0, short)
            assert together.thoughts[rows] == played.thoughts, control
            assert np.array_equal(together.results.success[rows], played.results.success)
            assert np.array_equal(together.results.lengths[rows], played.results.lengths)
            assert cost["decoder_sequences_per_step"] == alone.cost()["decoder_sequences_per_step"]
    changes = [overthinking(together.thoughts[rows])["thought_changes_per_step"].mean() for rows in grouped.slices]
    assert changes[2] < changes[6], changes  # the settings did act differently (patience:1:3 holds thoughts)


def _first_words(thoughts: list[list[str]]) -> list[list[str]]:
    return [[t.split()[0] if t.split() else "" for t in episode] for episode in thoughts]


def test_commit_holds_the_first_word_of_the_first_thought_and_commit_word_asks_for_one(
    tiny_tc: tuple[ThoughtCloningPolicy, Dataset, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    policy, data, run = tiny_tc
    plain = _first_words(_replay(policy, data)[1])
    assert any(len(set(episode)) > 1 for episode in plain), plain  # greedy decoding does change its first word
    controlled = ControlledThoughtPolicy(policy, parse_thought_control("commit"))
    committed = _first_words(_replay(controlled, data)[1])
    assert [episode[0] for episode in committed] == [episode[0] for episode in plain]  # the first step is free
    assert all(len(set(episode)) == 1 for episode in committed), committed
    assert 1.0 < controlled.cost()["decoder_sequences_per_step"] <= 2.0  # greedy, then the held word's thought
    # Asked for a word the agent rarely starts with: every thought of every episode starts with it.
    counts = {word: sum(e.count(word) for e in plain) for word in policy.tokenizer.words}
    word = min(counts, key=lambda w: (counts[w], w))
    asked = ControlledThoughtPolicy(policy, parse_thought_control(f"commit:{word}"))
    assert all(set(episode) == {word} for episode in _first_words(_replay(asked, data)[1]))
    assert asked.control.spec == f"commit:{word}"
    code = main(["eval", str(run), "--episodes", "1", "--tasks", "1", "--thought-control", "commit:zzzz", "--quiet"])
    assert_one_error_line(code, capsys.readouterr().err, "'zzzz' is not a word of the policy's thoughts")


def test_cli_eval_refuses_the_onnxruntime_backend_for_thought_cloning_in_one_line(
    tiny_tc: tuple[ThoughtCloningPolicy, Dataset, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, run = tiny_tc
    code = main(["eval", str(run), "--episodes", "1", "--tasks", "1", "--backend", "onnxruntime", "--quiet"])
    assert_one_error_line(code, capsys.readouterr().err, "keeps a state between steps", "torch backend")
