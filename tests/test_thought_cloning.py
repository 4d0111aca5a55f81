"""Thought cloning on BabyAI: bot demonstrations with thoughts, the tokenizer, the TC and recurrent BC
contracts (as test_policies.py), a learning test, pre-crime halting and the overthinking metric."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import minigrid  # noqa: F401  (in .[dev]: a missing install fails the module, it is not skipped)
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clonekit.checkpoint import MODEL_FILE, checkpoint_dirs, load_policy, load_run_config
from clonekit.data import Dataset
from clonekit.data.windows import sample_batch, window_indices
from clonekit.envs import get_env_family
from clonekit.envs.babyai import OBS_SIZE, BabyAITask
from clonekit.evaluation.thoughts import forbidden_phrases, overthinking, thought_accuracy, thought_rollout
from clonekit.experts.collect import collect
from clonekit.policies import build_policy
from clonekit.policies.thought_cloning.tokenizer import EOS, PAD, ThoughtTokenizer, build_vocab
from clonekit.train import TrainConfig, policy_config_for, train

NAMES = ("thought_cloning", "recurrent_bc")
SMALL: dict[str, Any] = {"hidden_size": 16, "embed_dim": 8, "window": 4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def babyai_data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """24 BabyAI bot episodes on UnlockPickup (one seed each), with the ``thought`` stream."""
    out = tmp_path_factory.mktemp("data") / "babyai"
    return collect("babyai", "bot", episodes=24, seed=0, out=out, num_tasks=24, show_progress=False)


def test_collection_records_one_thought_per_step(babyai_data: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    assert babyai_data.streams["thought"].kind == "text"
    assert babyai_data.streams["obs"].shape == (OBS_SIZE,)
    assert babyai_data.env["skipped_episodes"] == 0
    episode = babyai_data.episode(0)
    thoughts, actions = episode["thought"], np.asarray(episode["action"])
    assert len(thoughts) == len(actions) == babyai_data.episode_lengths[0]
    assert all(thoughts)
    # The bot's plan on UnlockPickup: fetch the key, open the door, drop the key, fetch the box.
    for verb in ("go to the", "pick up the", "open the", "drop the"):
        assert any(t.startswith(verb) for t in thoughts), (verb, thoughts)
    # A pickup/toggle/drop action is taken under the thought that names it.
    for thought, action in zip(thoughts, actions, strict=True):
        if action == 3:
            assert thought.startswith("pick up")
        if action == 4:
            assert thought.startswith("drop")
        if action == 5:
            assert thought.startswith("open")
    assert bool(np.asarray(episode["terminated"])[-1]) and np.asarray(episode["reward"])[-1] > 0


def test_noisy_collection_and_quiet_generation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    noisy = collect(
        "babyai",
        "bot",
        episodes=8,
        seed=1,
        out=tmp_path / "noisy",
        num_tasks=8,
        env_kwargs={"level": "BabyAI-SynthLoc-v0"},
        expert_kwargs={"action_noise": 0.2, "thought_noise": 0.2},
        show_progress=False,
    )
    assert noisy.env["expert_kwargs"] == {"action_noise": 0.2, "thought_noise": 0.2}
    assert noisy.num_episodes + noisy.env["skipped_episodes"] == 8
    assert "Sampling rejected" not in capsys.readouterr().out
    # The bot's own action is the label of every step; about action_noise * 6/7 of the executed ones differ.
    executed, labels = np.asarray(noisy.column("action")), np.asarray(noisy.column("expert_action"))
    assert 0.05 <= float((executed != labels).mean()) <= 0.35


def test_noise_that_opens_a_box_drops_the_episode_instead_of_failing(tmp_path: Path) -> None:
    # A random toggle can open a box; the bot then raises DisappearedBoxError. Seed 0 has 4 such episodes.
    noisy = collect(
        "babyai",
        "bot",
        episodes=48,
        seed=0,
        out=tmp_path / "boxes",
        num_tasks=48,
        env_kwargs={"level": "BabyAI-PutNextS5N2-v0"},
        expert_kwargs={"action_noise": 0.3},
        show_progress=False,
    )
    assert noisy.env["skipped_episodes"] >= 1 and noisy.num_episodes + noisy.env["skipped_episodes"] == 48


def test_tokenizer_round_trip() -> None:
    texts = ["go to the red ball", "open the door", "", "pick  up the  Red key", "drop the key"]
    vocab = build_vocab(texts)
    assert vocab[:3] == ("the", "key", "red") and vocab == build_vocab(list(reversed(texts)))
    tokenizer = ThoughtTokenizer(vocab, max_len=6)
    rows = tokenizer.encode_many(texts)
    assert rows.shape == (5, 6) and rows.dtype == np.int64
    assert [tokenizer.decode(r) for r in rows] == [
        "go to the red ball",
        "open the door",
        "",
        "pick up the red key",
        "drop the key",
    ]
    assert rows[2, 0] == EOS and (rows[2, 1:] == PAD).all()
    assert tokenizer.decode(tokenizer.encode("open the blue door")) == "open the <unk> door"
    assert tokenizer.decode(tokenizer.encode("a b c d e f g h")) == "<unk> <unk> <unk> <unk> <unk>"  # cut to 5 words


def _config(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=8, seed=3, checkpoint_every=5, log_every=4, tensorboard=False)


def _obs(data: Dataset, n: int) -> dict[str, torch.Tensor]:
    rows = np.linspace(0, data.num_steps - 1, n).astype(np.int64)
    return {"obs": torch.from_numpy(data.gather(rows, ["obs"])["obs"])}


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_identical_actions_and_keeps_the_vocabulary(
    name: str, babyai_data: Dataset, tmp_path: Path
) -> None:
    policy = train(name, babyai_data, tmp_path / "run", _config(6), policy_overrides=SMALL, show_progress=False)
    loaded = load_policy(tmp_path / "run")
    vocab = load_run_config(tmp_path / "run")["policy_config"]["thought_vocab"]
    assert (len(vocab) > 10) == (name == "thought_cloning")
    obs = _obs(babyai_data, 7)
    with torch.inference_mode():
        state_a, state_b = policy.initial_state(7), loaded.initial_state(7)
        for _ in range(3):  # the memory is carried identically too
            a, state_a = policy.act(obs, state_a)
            b, state_b = loaded.act(obs, state_b)
            assert a.shape == (7,) and a.dtype == torch.int64
            torch.testing.assert_close(a, b, rtol=0, atol=0)
            assert policy.thoughts(state_a) == loaded.thoughts(state_b)
    for key, value in policy.state_dict().items():
        torch.testing.assert_close(value, loaded.state_dict()[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_compute_loss_does_not_mutate_the_batch(name: str, babyai_data: Dataset) -> None:
    policy = build_policy(name, policy_config_for(name, babyai_data, SMALL))
    streams = [s for s in policy.required_streams if babyai_data.streams[s].kind == "array"]
    encoded = {"thought": policy.encode_text("thought", list(babyai_data.column("thought")))}
    if name == "recurrent_bc":
        encoded = {}
    batch = sample_batch(babyai_data, 8, torch.Generator().manual_seed(0), streams, policy.sample_windows(), encoded)
    assert batch["obs"].shape == (8, 4, OBS_SIZE)
    before = {k: v.clone() for k, v in batch.items()}
    loss, info = policy.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and ("thought_nll" in info) == (name == "thought_cloning")
    for key in before:
        torch.testing.assert_close(batch[key], before[key], rtol=0, atol=0)


def _episode_batch(policy: Any, data: Dataset, episodes: list[int], window: int) -> dict[str, torch.Tensor]:
    """Windows of ``window`` steps from the start of ``episodes`` (padded by repeating the last step)."""
    rows = window_indices(data, np.asarray(data.episode_starts)[episodes], window)
    batch = data.gather(rows.ravel(), ["obs", "action", "terminated", "truncated"])
    batch["thought"] = policy.encode_text("thought", list(data.column("thought")))[rows.ravel()]
    return {k: torch.from_numpy(v.reshape(len(episodes), window, *v.shape[1:])) for k, v in batch.items()}


@pytest.mark.parametrize("window", [20, 30])  # 20 cuts the 28-step episode; 30 pads every one
def test_batched_loss_is_the_per_episode_losses_combined(window: int, babyai_data: Dataset) -> None:
    # The loss runs only the real steps of a batch (padding is never computed): together or one episode at a
    # time, every episode's steps and thought words must count the same.
    torch.manual_seed(0)
    config = policy_config_for("thought_cloning", babyai_data, {**SMALL, "window": window})
    policy = build_policy("thought_cloning", config)
    episodes = [0, 6, 10, 18]  # 13, 17, 28 and 15 steps
    loss, info = policy.compute_loss(_episode_batch(policy, babyai_data, episodes, window))
    steps, words, alone = [], [], []
    for episode in episodes:
        batch = _episode_batch(policy, babyai_data, [episode], window)
        n = min(window, int(babyai_data.episode_lengths[episode]))
        steps.append(n)
        words.append(int((batch["thought"][0, :n] != PAD).sum()))
        alone.append(policy.compute_loss(batch)[1])
    assert steps == [13, 17, min(window, 28), 15]
    step_share, word_share = np.array(steps) / sum(steps), np.array(words) / sum(words)
    for key, share in [("action_nll", step_share), ("entropy", step_share), ("action_accuracy", step_share)] + [
        (key, word_share) for key in ("thought_nll", "thought_word_accuracy")
    ]:
        assert info[key] == pytest.approx(sum(s * i[key] for s, i in zip(share, alone, strict=True)), rel=1e-5), key
    combined = sum(s * i["thought_accuracy"] for s, i in zip(step_share, alone, strict=True))
    assert info["thought_accuracy"] == pytest.approx(combined, rel=1e-5)  # whole thoughts right, per step
    weights = policy.config
    expected = (
        info["action_nll"] - weights.entropy_weight * info["entropy"] + weights.thought_weight * info["thought_nll"]
    )
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_act_is_batched_and_state_consistent(name: str, babyai_data: Dataset) -> None:
    torch.manual_seed(0)
    policy = build_policy(name, policy_config_for(name, babyai_data, SMALL)).eval()
    obs = _obs(babyai_data, 5)
    with torch.inference_mode():
        together, state = policy.act(obs, policy.initial_state(5))
        alone = []
        for i in range(5):
            single = {"obs": obs["obs"][i : i + 1]}
            a1, s1 = policy.act(single, policy.initial_state(1))
            a2, _ = policy.act(single, s1)
            alone.append((a1, a2))
        again, _ = policy.act(obs, state)
    torch.testing.assert_close(together, torch.cat([a for a, _ in alone]), rtol=0, atol=0)
    torch.testing.assert_close(again, torch.cat([b for _, b in alone]), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_resume_reproduces_the_uninterrupted_weights(name: str, babyai_data: Dataset, tmp_path: Path) -> None:
    train(name, babyai_data, tmp_path / "whole", _config(12), policy_overrides=SMALL, show_progress=False)
    train(name, babyai_data, tmp_path / "cut", _config(5), policy_overrides=SMALL, show_progress=False)
    assert [p.name for p in checkpoint_dirs(tmp_path / "cut")] == ["step_00000005"]
    (tmp_path / "cut" / MODEL_FILE).unlink()
    train(name, babyai_data, tmp_path / "cut", _config(12), resume=True, show_progress=False)
    whole = load_file(str(tmp_path / "whole" / MODEL_FILE))
    cut = load_file(str(tmp_path / "cut" / MODEL_FILE))
    assert whole.keys() == cut.keys()
    for key in whole:
        assert torch.equal(whole[key], cut[key]), key


def test_thought_cloning_learns_the_bots_thoughts_and_generates_them_on_held_out_seeds(tmp_path: Path) -> None:
    """The learning test of thought cloning, and the README's headline babyai-thought claim at this size: TC
    fits the bot's actions and thoughts on its demonstrations and generates the bot's thoughts on held-out seeds.
    (TC beating BC out of distribution, and pre-crime halting on "red", show only at the full preset.)"""
    level = {"level": "BabyAI-UnlockPickup-v0"}  # short episodes; PutNext needs the full preset
    demos = collect(
        "babyai", "bot", episodes=60, seed=0, out=tmp_path / "demos", num_tasks=60, env_kwargs=level,
        show_progress=False,
    )  # fmt: skip
    reference = collect(
        "babyai", "bot", episodes=30, seed=0, out=tmp_path / "reference", num_tasks=30, env_kwargs=level,
        split="test", show_progress=False,
    )  # fmt: skip
    config = TrainConfig(steps=200, batch_size=8, lr=3e-3, seed=0, checkpoint_every=200, tensorboard=False)
    overrides = {"hidden_size": 64, "embed_dim": 16, "window": 40}
    tc = train("thought_cloning", demos, tmp_path / "tc", config, overrides, show_progress=False)
    # Replayed on the training episodes, memory carried. Chance: 1/7 for actions; ~40 distinct sentences.
    # Measured (training seeds 0-2): actions 0.99-1.00, thoughts 0.33-0.34 word for word.
    seen = thought_accuracy(tc, demos)
    assert seen["action_accuracy"].mean() >= 0.9, seen["action_accuracy"].mean()
    assert seen["thought_accuracy"].mean() >= 0.25, seen["thought_accuracy"].mean()
    accuracy = float(thought_accuracy(tc, reference)["thought_accuracy"].mean())
    # A thinker that always says the most frequent training thought ("explore") scores this on the reference.
    words = [" ".join(t.lower().split()) for t in demos.column("thought")]
    majority = Counter(words).most_common(1)[0][0]
    baseline = float(np.mean([" ".join(t.lower().split()) == majority for t in reference.column("thought")]))
    # Measured (seeds 0-2): 0.26-0.31 word-for-word on the held-out seeds; baseline 0.10; with the thought
    # loss off: 0 (README, full size on PutNext: 0.88-0.91).
    assert baseline <= 0.15, f"the reference episodes are mostly {majority!r} ({baseline:.2f})"
    assert accuracy >= 0.2, f"thought accuracy on held-out seeds {accuracy:.2f} (always {majority!r}: {baseline:.2f})"
    explanation = tc.explain(_obs(demos, 3))
    assert explanation is not None and len(explanation["thought"]) == 3


class _ScriptedThinker(torch.nn.Module):
    """Walks forward, then "picks up the red key" (action pickup) in front of it: a scripted unsafe episode."""

    def __init__(self, thoughts: list[str], actions: list[int]) -> None:
        super().__init__()
        self.script = list(zip(thoughts, actions, strict=True))

    def initial_state(self, n: int) -> tuple[int, list[str]]:
        return (0, [""] * n)

    def act(self, obs: dict[str, torch.Tensor], state: Any) -> tuple[torch.Tensor, Any]:
        step, _ = state
        thought, action = self.script[min(step, len(self.script) - 1)]
        n = obs["obs"].shape[0]
        return torch.full((n,), action), (step + 1, [thought] * n)

    def thoughts(self, state: Any) -> list[str]:
        return state[1]


def _red_key_task() -> BabyAITask:
    """An UnlockPickup seed where the agent starts facing the key... found by the bot: its first pickup."""
    return BabyAITask("BabyAI-UnlockPickup-v0", 1)


def test_pre_crime_halting_stops_before_the_unsafe_action(babyai_data: Dataset) -> None:
    family = get_env_family("babyai")
    task = _red_key_task()
    # Replay the bot's own episode on this seed: its thoughts and actions, scripted.
    data = collect_one(task)
    thoughts, actions = list(data["thought"]), [int(a) for a in data["action"]]
    pickup = actions.index(3)
    key = thoughts[pickup].removeprefix("pick up the ")
    agent = _ScriptedThinker(thoughts, actions)
    unsafe = forbidden_phrases([key])
    free = thought_rollout(agent, family, [task], 1, seed=0, unsafe_if=unsafe)  # type: ignore[arg-type]
    assert free.unsafe_actions.tolist() == [1] and not free.halted.any()
    halt = forbidden_phrases([f"pick up the {key}"])
    stopped = thought_rollout(agent, family, [task], 1, seed=0, halt_if=halt, unsafe_if=unsafe)  # type: ignore[arg-type]
    assert stopped.halted.tolist() == [True] and stopped.unsafe_actions.tolist() == [0]
    assert stopped.results.lengths.tolist() == [pickup]  # every action before the pickup ran, not the pickup
    assert stopped.thoughts[0][-1] == f"pick up the {key}" and not stopped.results.success.any()


def collect_one(task: BabyAITask) -> dict[str, Any]:
    from clonekit.experts.babyai_bot import BabyAIBotExpert

    family = get_env_family("babyai")
    vec = family.make_vec([task])
    obs = vec.reset()
    expert = BabyAIBotExpert()
    expert.reset(vec)
    thoughts, actions = [], []
    while not vec.done[0]:
        action, notes = expert.act(obs)
        thoughts.append(notes["thought"][0])
        actions.append(int(action[0]))
        obs, *_ = vec.step(action)
    return {"thought": thoughts, "action": actions}


def test_overthinking_counts_changes_and_flip_flops() -> None:
    metrics = overthinking([["a", "a", "b", "a", "a"], ["x"], ["a", "b", "c", "d"]])
    np.testing.assert_allclose(metrics["thought_changes_per_step"], [2 / 5, 0, 3 / 4])
    np.testing.assert_allclose(metrics["flip_flop_rate"], [1 / 2, 0, 0])


def test_tiny_babyai_thought_experiment_writes_results(tmp_path: Path) -> None:
    from dataclasses import replace

    from clonekit.experiments import babyai_thought

    config = replace(
        babyai_thought.QUICK, episodes=12, eval_episodes=4, steps=3, batch_size=4, hidden_size=16, window=32, threads=1
    )
    # The run uses its own thread count and gives the caller's back. The caller holds 2 threads and the run 1:
    # running with 2 threads beside another busy test process is many times slower on 2 shared cores.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = babyai_thought.run(
            tmp_path, seed=0, quick=True, show_progress=False, log=lambda m: None, config=config
        )
        assert torch.get_num_threads() == 2, "the caller's thread count is restored"
    finally:
        torch.set_num_threads(before)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == results and results["experiment"] == "babyai-thought"
    assert results["config"]["threads"] == 1 and results["config"]["torch_threads"] == 1
    assert set(results["metrics"]) == {"tc", "bc"}
    for key in ("tc", "bc"):
        assert set(results["metrics"][key]) == {"test", "ood"}
        assert results["metrics"][key]["test"]["success"]["n"] == 4
    test = results["metrics"]["tc"]["test"]
    assert {"thought_accuracy", "thought_changes_per_step", "unsafe_actions", "unsafe_actions_halted"} <= set(test)
    assert (tmp_path / "report.md").read_text().startswith("# babyai-thought")


def test_cli_eval_shows_and_records_thoughts(babyai_data: Dataset, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clonekit.cli import app

    train("thought_cloning", babyai_data, tmp_path / "run", _config(2), policy_overrides=SMALL, show_progress=False)
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--episodes", "2", "--show-thoughts"])
    assert result.exit_code == 0, result.output
    assert "episode 0" in result.output and "thought_changes_per_step" in result.output
    lines = (tmp_path / "run" / "thoughts_test.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "thoughts" in json.loads(lines[0])
