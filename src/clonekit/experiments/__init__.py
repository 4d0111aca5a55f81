"""Named end-to-end recipes run by ``clonekit run NAME``; ``EXPERIMENTS`` is the one registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clonekit.config import config_from_json, config_to_json
from clonekit.errors import unknown_name
from clonekit.experiments import (
    adversarial_il,
    arm_retarget,
    avoiding_hilp,
    avoiding_mixed,
    avoiding_mode,
    avoiding_modes,
    avoiding_ood_dynamics,
    avoiding_play,
    avoiding_quality,
    avoiding_residual,
    avoiding_style,
    babyai_overthinking,
    babyai_thought,
    continuous_interactive,
    demo_rl,
    gym_interactive,
    incontext,
    interactive_compare,
    lfo_ads,
    maze_cognitive,
    maze_continual,
    maze_idm,
    maze_interactive,
    maze_procedure,
    maze_procedure_size,
    maze_quality,
    maze_recovery,
    maze_robustness,
    maze_star,
    maze_strategies,
    metaworld_mt,
    offline_gap,
    pasta,
    pixels_dynamo,
    terrain_procedure,
)
from clonekit.experiments.common import split_success_table


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment: its ``run(out, seed, quick, show_progress, log, config)``, its two presets (the
    ``config`` used without one, full or ``quick``) and how to tabulate its results."""

    name: str
    description: str
    run: Callable[..., dict[str, Any]]
    table_columns: tuple[str, ...]
    table: Callable[[dict[str, Any]], list[tuple[str, ...]]]
    full: Any
    quick: Any

    def config(self, quick: bool, overrides: dict[str, Any]) -> Any:
        """The preset (``quick`` or full) with ``overrides`` (field -> JSON value) applied and checked."""
        base = self.quick if quick else self.full
        return config_from_json(type(base), {**config_to_json(base), **overrides}, f"--set ({self.name})")


EXPERIMENTS: dict[str, ExperimentSpec] = {
    maze_procedure.NAME: ExperimentSpec(
        name=maze_procedure.NAME,
        description="BC vs procedure cloning on 5 and 20 training mazes, evaluated on unseen mazes",
        run=maze_procedure.run,
        table_columns=("policy", "train success [95% CI]", "test (unseen) success [95% CI]"),
        table=maze_procedure.success_table,
        full=maze_procedure.FULL,
        quick=maze_procedure.QUICK,
    ),
    maze_procedure_size.NAME: ExperimentSpec(
        name=maze_procedure_size.NAME,
        description="BC vs procedure cloning trained on 16x16 mazes, evaluated on unseen 16x16, 24x24 and 32x32 mazes",
        run=maze_procedure_size.run,
        table_columns=("policy", "train [95% CI]", "test16 [95% CI]", "test24 [95% CI]", "test32 [95% CI]"),
        table=split_success_table,
        full=maze_procedure_size.FULL,
        quick=maze_procedure_size.QUICK,
    ),
    terrain_procedure.NAME: ExperimentSpec(
        name=terrain_procedure.NAME,
        description="BC vs weighted procedure cloning (a Dijkstra search) on mud-and-road grids, evaluated on unseen "
        "16x16, 24x24 and 32x32 grids",
        run=terrain_procedure.run,
        table_columns=("policy", "train [95% CI]", "test16 [95% CI]", "test24 [95% CI]", "test32 [95% CI]"),
        table=split_success_table,
        full=terrain_procedure.FULL,
        quick=terrain_procedure.QUICK,
    ),
    avoiding_modes.NAME: ExperimentSpec(
        name=avoiding_modes.NAME,
        description="MSE vs GMM vs diffusion (and chunked diffusion) BC on multimodal Avoiding demonstrations",
        run=avoiding_modes.run,
        table_columns=("policy", "test success [95% CI]", "test entropy [95% CI]", "test modes [95% CI]"),
        table=avoiding_modes.modes_table,
        full=avoiding_modes.FULL,
        quick=avoiding_modes.QUICK,
    ),
    avoiding_mode.NAME: ExperimentSpec(
        name=avoiding_mode.NAME,
        description="Dense diffusion vs MoDE (noise-routed mixture-of-experts denoiser) BC on multimodal Avoiding",
        run=avoiding_mode.run,
        table_columns=("policy", "test success [95% CI]", "test entropy [95% CI]", "inference FLOPs / action"),
        table=avoiding_mode.mode_table,
        full=avoiding_mode.FULL,
        quick=avoiding_mode.QUICK,
    ),
    avoiding_hilp.NAME: ExperimentSpec(
        name=avoiding_hilp.NAME,
        description="Zero-shot goal reaching from undirected play: HILP (Hilbert representation) vs goal BC",
        run=avoiding_hilp.run,
        table_columns=("policy", "test (unseen goals) success [95% CI]"),
        table=avoiding_hilp.reach_table,
        full=avoiding_hilp.FULL,
        quick=avoiding_hilp.QUICK,
    ),
    avoiding_play.NAME: ExperimentSpec(
        name=avoiding_play.NAME,
        description="Goal reaching from undirected play: Play-LMP (latent plans) vs goal-conditioned BC",
        run=avoiding_play.run,
        table_columns=("policy", "test (unseen goals) success [95% CI]"),
        table=avoiding_play.reach_table,
        full=avoiding_play.FULL,
        quick=avoiding_play.QUICK,
    ),
    avoiding_style.NAME: ExperimentSpec(
        name=avoiding_style.NAME,
        description="Unconditioned vs style-conditioned BC on Avoiding: is the asked path (style) the one played?",
        run=avoiding_style.run,
        table_columns=("policy", "test success [95% CI]", "test style agreement [95% CI]"),
        table=avoiding_style.style_table,
        full=avoiding_style.FULL,
        quick=avoiding_style.QUICK,
    ),
    avoiding_ood_dynamics.NAME: ExperimentSpec(
        name=avoiding_ood_dynamics.NAME,
        description="BC on mixed-dynamics Avoiding demos: uniform vs weighted by a learned transferability score",
        run=avoiding_ood_dynamics.run,
        table_columns=("policy", "test success [95% CI]"),
        table=avoiding_ood_dynamics.success_table,
        full=avoiding_ood_dynamics.FULL,
        quick=avoiding_ood_dynamics.QUICK,
    ),
    avoiding_mixed.NAME: ExperimentSpec(
        name=avoiding_mixed.NAME,
        description="ReCOIL vs BC (expert only, all, filtered) and offline RL on expert + noisy/random Avoiding data",
        run=avoiding_mixed.run,
        table_columns=("policy", "test success [95% CI]"),
        table=avoiding_mixed.success_table,
        full=avoiding_mixed.FULL,
        quick=avoiding_mixed.QUICK,
    ),
    babyai_thought.NAME: ExperimentSpec(
        name=babyai_thought.NAME,
        description="Thought cloning vs recurrent BC on BabyAI bot demonstrations: held-out and harder levels",
        run=babyai_thought.run,
        table_columns=("policy", "test success [95% CI]", "ood success [95% CI]", "test thought accuracy"),
        table=babyai_thought.success_table,
        full=babyai_thought.FULL,
        quick=babyai_thought.QUICK,
    ),
    babyai_overthinking.NAME: ExperimentSpec(
        name=babyai_overthinking.NAME,
        description="Thought cloning under decision-time overthinking control (sticky, rerank, patience) vs greedy",
        run=babyai_overthinking.run,
        table_columns=(
            "setting",
            "test success [95% CI]",
            "ood success [95% CI]",
            "test thought changes / step",
            "decoder / step",
        ),
        table=babyai_overthinking.tradeoff_table,
        full=babyai_overthinking.FULL,
        quick=babyai_overthinking.QUICK,
    ),
    maze_robustness.NAME: ExperimentSpec(
        name=maze_robustness.NAME,
        description="PGD observation attacks on BC, adversarially trained BC and procedure cloning (unseen mazes)",
        run=maze_robustness.run,
        table_columns=("policy", "clean success [95% CI]", "success under PGD [95% CI]", "attack success [95% CI]"),
        table=maze_robustness.robustness_table,
        full=maze_robustness.FULL,
        quick=maze_robustness.QUICK,
    ),
    metaworld_mt.NAME: ExperimentSpec(
        name=metaworld_mt.NAME,
        description="BC heads (MSE, GMM, diffusion, chunked) of Meta-World's scripted policies, 6 tasks, unseen seeds",
        run=metaworld_mt.run,
        table_columns=("policy", "test success, all tasks [95% CI]", "worst task"),
        table=metaworld_mt.success_table,
        full=metaworld_mt.FULL,
        quick=metaworld_mt.QUICK,
    ),
    maze_interactive.NAME: ExperimentSpec(
        name=maze_interactive.NAME,
        description="DAgger, HG-DAgger and Sirius vs BC at an equal expert-label budget, evaluated on unseen mazes",
        run=maze_interactive.run,
        table_columns=("policy", "test (unseen) success [95% CI]", "train success [95% CI]", "expert labels"),
        table=interactive_compare.success_table,
        full=maze_interactive.FULL,
        quick=maze_interactive.QUICK,
    ),
    maze_interactive.FARTHEST_NAME: ExperimentSpec(
        name=maze_interactive.FARTHEST_NAME,
        description="maze-interactive with every episode starting at the cell farthest from the goal "
        "(demonstrations show one route a maze)",
        run=maze_interactive.run_farthest,
        table_columns=("policy", "test (unseen) success [95% CI]", "train success [95% CI]", "expert labels"),
        table=interactive_compare.success_table,
        full=maze_interactive.FARTHEST,
        quick=maze_interactive.FARTHEST_QUICK,
    ),
    continuous_interactive.NAME: ExperimentSpec(
        name=continuous_interactive.NAME,
        description="DAgger, HG-DAgger, Sirius and RLIF vs BC at an equal expert-label budget on Meta-World reach",
        run=continuous_interactive.run,
        table_columns=("policy", "test (unseen) success [95% CI]", "train success [95% CI]", "expert labels"),
        table=interactive_compare.success_table,
        full=continuous_interactive.FULL,
        quick=continuous_interactive.QUICK,
    ),
    gym_interactive.NAME: ExperimentSpec(
        name=gym_interactive.NAME,
        description="DAgger, HG-DAgger, Sirius and RLIF vs BC at an equal expert-label budget on a gymnasium env "
        "with a state-feedback expert (Pendulum-v1 swing-up)",
        run=gym_interactive.run,
        table_columns=("policy", "test (unseen) success [95% CI]", "train success [95% CI]", "expert labels"),
        table=interactive_compare.success_table,
        full=gym_interactive.FULL,
        quick=gym_interactive.QUICK,
    ),
    maze_quality.NAME: ExperimentSpec(
        name=maze_quality.NAME,
        description="Polluted maze demonstrations: detectors vs injected defects; BC raw, curated, best-of-N, "
        "augmented, recovery",
        run=maze_quality.run,
        table_columns=("key", "test success or detector F1 [95% CI]", "perturbed success or precision / recall"),
        table=maze_quality.success_table,
        full=maze_quality.FULL,
        quick=maze_quality.QUICK,
    ),
    maze_recovery.NAME: ExperimentSpec(
        name=maze_recovery.NAME,
        description="Farthest-start maze demonstrations (one route a maze): BC with recovery splices after pushes "
        "vs as many labels of more demonstrations",
        run=maze_recovery.run,
        table_columns=("policy", "train_perturbed success [95% CI]", "test_perturbed success [95% CI]", "labels"),
        table=maze_recovery.success_table,
        full=maze_recovery.FULL,
        quick=maze_recovery.QUICK,
    ),
    avoiding_quality.NAME: ExperimentSpec(
        name=avoiding_quality.NAME,
        description="Polluted Avoiding demonstrations (continuous): detectors vs injected defects; BC raw, curated, "
        "best-of-N",
        run=avoiding_quality.run,
        table_columns=("key", "test success or detector F1 [95% CI]", "data steps or precision / recall"),
        table=avoiding_quality.success_table,
        full=avoiding_quality.FULL,
        quick=avoiding_quality.QUICK,
    ),
    maze_idm.NAME: ExperimentSpec(
        name=maze_idm.NAME,
        description="Inverse-dynamics labelling (VPT): BC on IDM labels vs true labels vs the few labelled episodes",
        run=maze_idm.run,
        table_columns=("key", "test success (bc_*) or label accuracy (idm) [95% CI]"),
        table=maze_idm.success_table,
        full=maze_idm.FULL,
        quick=maze_idm.QUICK,
    ),
    maze_continual.NAME: ExperimentSpec(
        name=maze_continual.NAME,
        description="Continual offline learning on maze task groups: fine-tuning vs uniform replay vs OER's selection",
        run=maze_continual.run,
        table_columns=("policy", "final success, all groups [95% CI]", "forgetting [95% CI]", "forward transfer"),
        table=maze_continual.success_table,
        full=maze_continual.FULL,
        quick=maze_continual.QUICK,
    ),
    maze_star.NAME: ExperimentSpec(
        name=maze_star.NAME,
        description="Self-improvement (STaR): BC on a few maze demonstrations retrained on its own successes, 3 rounds",
        run=maze_star.run,
        table_columns=("policy", "test (unseen) success [95% CI]", "train success [95% CI]"),
        table=maze_star.success_table,
        full=maze_star.FULL,
        quick=maze_star.QUICK,
    ),
    avoiding_residual.NAME: ExperimentSpec(
        name=avoiding_residual.NAME,
        description="Residual PPO on a frozen chunked diffusion BC policy, on precision Avoiding (narrow gates)",
        run=avoiding_residual.run,
        table_columns=("policy", "test (unseen starts) success [95% CI]", "train success [95% CI]"),
        table=avoiding_residual.success_table,
        full=avoiding_residual.FULL,
        quick=avoiding_residual.QUICK,
    ),
    adversarial_il.NAME: ExperimentSpec(
        name=adversarial_il.NAME,
        description="BC vs GAIL, AIRL and GAIfO (adversarial IL with PPO) from a few subsampled CartPole demos",
        run=adversarial_il.run,
        table_columns=("policy", "test return [95% CI]", "test success [95% CI]"),
        table=adversarial_il.results_table,
        full=adversarial_il.FULL,
        quick=adversarial_il.QUICK,
    ),
    lfo_ads.NAME: ExperimentSpec(
        name=lfo_ads.NAME,
        description="Observation-only Acrobot demos: GAIfO with a fixed discount vs ADS, and BCO",
        run=lfo_ads.run,
        table_columns=("policy", "test success [95% CI]"),
        table=lfo_ads.results_table,
        full=lfo_ads.FULL,
        quick=lfo_ads.QUICK,
    ),
    demo_rl.NAME: ExperimentSpec(
        name=demo_rl.NAME,
        description="PPO from scratch vs PPO pulled towards a BC prior (KL, decaying) on a few sparse-reward mazes",
        run=demo_rl.run,
        table_columns=("policy", "env steps to success threshold (median [95% CI])", "final success [95% CI]"),
        table=demo_rl.steps_table,
        full=demo_rl.FULL,
        quick=demo_rl.QUICK,
    ),
    offline_gap.NAME: ExperimentSpec(
        name=offline_gap.NAME,
        description="Generalization gap of BC, filtered BC, IQL, ReCOIL and DT: training mazes vs unseen mazes",
        run=offline_gap.run,
        table_columns=("policy", "train success [95% CI]", "test (unseen) success [95% CI]", "gap train - test"),
        table=offline_gap.success_table,
        full=offline_gap.FULL,
        quick=offline_gap.QUICK,
    ),
    maze_strategies.NAME: ExperimentSpec(
        name=maze_strategies.NAME,
        description="Thought cloning that names its own maze strategy (prompt erasure) vs unlabelled mixture vs bfs",
        run=maze_strategies.run,
        table_columns=(
            "policy",
            "test success [95% CI]",
            "ood success [95% CI]",
            "test strategy accuracy",
            "ood strategy accuracy",
        ),
        table=maze_strategies.success_table,
        full=maze_strategies.FULL,
        quick=maze_strategies.QUICK,
    ),
    maze_cognitive.NAME: ExperimentSpec(
        name=maze_cognitive.NAME,
        description="Thought cloning primed with or without cognitive thoughts (checks, backtracking), then STaR",
        run=maze_cognitive.run,
        table_columns=(
            "policy",
            "test success [95% CI]",
            "test backtracking thoughts [95% CI]",
            "train success [95% CI]",
        ),
        table=maze_cognitive.success_table,
        full=maze_cognitive.FULL,
        quick=maze_cognitive.QUICK,
    ),
    arm_retarget.NAME: ExperimentSpec(
        name=arm_retarget.NAME,
        description="Cross-embodiment retargeting: BC on few 3-link arm demos vs plus retargeted 2-link demos",
        run=arm_retarget.run,
        table_columns=("policy", "test (unseen tasks) success [95% CI]"),
        table=arm_retarget.success_table,
        full=arm_retarget.FULL,
        quick=arm_retarget.QUICK,
    ),
    pixels_dynamo.NAME: ExperimentSpec(
        name=pixels_dynamo.NAME,
        description="Few-demo pixel BC: scratch CNN vs DynaMo-pretrained (fine-tuned) vs frozen random encoder",
        run=pixels_dynamo.run,
        table_columns=("policy", "test success per demo count [95% CI]"),
        table=pixels_dynamo.success_table,
        full=pixels_dynamo.FULL,
        quick=pixels_dynamo.QUICK,
    ),
    pixels_dynamo.AVOIDING_NAME: ExperimentSpec(
        name=pixels_dynamo.AVOIDING_NAME,
        description="pixels-dynamo on pixel Avoiding (paths expert, continuous_bc with a GMM head, held-out starts)",
        run=pixels_dynamo.run_avoiding,
        table_columns=("policy", "test success per demo count [95% CI]"),
        table=pixels_dynamo.success_table,
        full=pixels_dynamo.AVOIDING_FULL,
        quick=pixels_dynamo.AVOIDING_QUICK,
    ),
    incontext.NAME: ExperimentSpec(
        name=incontext.NAME,
        description="In-context RL (ReLIC-lite): a transformer over several trials of one unseen hidden-goal task",
        run=incontext.run,
        table_columns=("policy", "trial 1 success [95% CI]", "last trial success [95% CI]", "gain last - first"),
        table=incontext.success_table,
        full=incontext.FULL,
        quick=incontext.QUICK,
    ),
    pasta.NAME: ExperimentSpec(
        name=pasta.NAME,
        description="Transformer BC from few Avoiding demos: from scratch vs PASTA-pretrained on a noisy pool",
        run=pasta.run,
        table_columns=("policy", "test success per expert budget [95% CI]"),
        table=pasta.success_table,
        full=pasta.FULL,
        quick=pasta.QUICK,
    ),
}


def get_experiment(name: str) -> ExperimentSpec:
    """The experiment called ``name``."""
    if name not in EXPERIMENTS:
        raise unknown_name("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name]


__all__ = ["EXPERIMENTS", "ExperimentSpec", "get_experiment"]
