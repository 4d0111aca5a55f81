"""The ``clonekit`` command line: parses flags, calls library functions, prints results.

User errors (missing paths, unknown names, corrupt data, bad values) print one ``error:`` line on stderr
and exit with code 2; nothing the user passed in is modified.
"""

from __future__ import annotations

import json
import os
import sys
from inspect import signature
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clonekit.config import config_to_json
from clonekit.errors import ClonekitError, ConfigError

app = typer.Typer(
    name="clonekit",
    help="Learn from demonstrations: clone actions and the reasoning behind them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from clonekit import __version__

        try:
            installed = version("clonekit")
        except PackageNotFoundError:  # run from a source tree that was never installed
            installed = __version__
        typer.echo(f"clonekit {installed}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print clonekit's version and exit."),
    ] = False,
) -> None:
    """Options that come before the command."""


def _print_json(data: Any) -> None:
    # The results JSON is the last line on stdout, whole, so scripts can parse it.
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["hidden_channels=32", "encoder=\"mlp\""]`` -> dict; values are JSON, or plain strings."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


RayFlag = Annotated[
    bool,
    typer.Option("--ray", help="Run the work as Ray tasks (needs the 'ray' extra); a local Ray unless --ray-address."),
]
RayAddress = Annotated[
    str | None,
    typer.Option(help="Address of a running Ray cluster (implies --ray), e.g. 'auto' or 'ray://host:10001'."),
]
RayWorkers = Annotated[
    int | None, typer.Option(help="With --ray: at most N tasks at a time, and the CPUs of a local Ray (default: all).")
]


def _ray_options(ray: bool, ray_address: str | None, workers: int | None) -> dict[str, Any]:
    """Keyword arguments for the library's ``ray``/``ray_address``/``workers`` (empty without Ray)."""
    if not ray and ray_address is None:
        if workers is not None:
            raise ConfigError("--workers: only used with --ray or --ray-address")
        return {}
    return {"ray": True, "ray_address": ray_address, "workers": workers}


@app.command()
def collect(
    env: Annotated[str, typer.Argument(help="Env family, e.g. 'maze', or gym:ID for any gymnasium env.")],
    expert: Annotated[
        str,
        typer.Option(help="Expert name, e.g. 'bfs', or py:module:attr, an SB3 .zip, an .onnx file, a run directory."),
    ],
    episodes: Annotated[int, typer.Option(help="Number of episodes to record.")],
    out: Annotated[Path, typer.Option(help="Dataset directory to create.")],
    seed: Annotated[int, typer.Option(help="Seed: fixes the tasks and the start states.")] = 0,
    tasks: Annotated[
        int | None,
        typer.Option(help="Number of distinct training tasks (e.g. mazes; default 20, gym: one per episode)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset at --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    batch_size: Annotated[
        int, typer.Option(help="Episodes played together; each batch is seeded on its own (and is one Ray task).")
    ] = 256,
    ray: RayFlag = False,
    ray_address: RayAddress = None,
    workers: RayWorkers = None,
    env_kwargs: Annotated[
        str, typer.Option(help='Env options as JSON, e.g. \'{"level": "BabyAI-SynthLoc-v0"}\' for babyai.')
    ] = "{}",
    expert_kwargs: Annotated[
        str, typer.Option(help="Expert options as JSON, e.g. '{\"action_noise\": 0.1}' for the babyai bot.")
    ] = "{}",
) -> None:
    """Record expert demonstrations, with the expert's annotation streams, into a dataset."""
    from clonekit.experts.collect import collect as run_collect

    dataset = run_collect(
        env,
        expert,
        episodes=episodes,
        seed=seed,
        out=out,
        num_tasks=tasks,
        overwrite=overwrite,
        show_progress=not quiet,
        batch_size=batch_size,
        env_kwargs=_json_option("--env-kwargs", env_kwargs),
        expert_kwargs=_json_option("--expert-kwargs", expert_kwargs),
        **_ray_options(ray, ray_address, workers),
    )
    skipped = dataset.env.get("skipped_episodes", 0)
    if skipped:
        err_console.print(f"{skipped} episode(s) skipped: the expert failed on them")
    out_console.print(
        f"wrote {dataset.path}: {dataset.num_episodes} episodes, {dataset.num_steps} steps, "
        f"streams {', '.join(dataset.streams)}"
    )


@app.command()
def inspect(
    data: Annotated[Path, typer.Argument(help="Dataset directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verify: Annotated[bool, typer.Option(help="Recompute the content fingerprint and compare.")] = False,
    quality: Annotated[
        bool,
        typer.Option(
            "--quality",
            help="Quality report: outcomes, demonstrators, state coverage, transition diversity, action "
            "conflicts, annotation coverage (see clonekit.quality.report).",
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="With --quality: also write report.md, quality.json and plots here.")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="With --quality: a trained run whose actions are compared with the data's at every step "
            "(see clonekit.quality.policy_metrics).",
        ),
    ] = None,
    compatibility: Annotated[
        str | None,
        typer.Option(
            help="With --quality and --out: train this policy once per demonstrator on the others' episodes and "
            "report how well it predicts the one left out (leave-one-demonstrator-out compatibility).",
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="Training steps of each --compatibility run.")] = 500,
) -> None:
    """Summarize a dataset: counts, streams, episode lengths, returns; --quality for its quality report."""
    from clonekit.data import Dataset

    dataset = Dataset.open(data)
    if verify:
        dataset.verify()
    for flag, value in (("--out", out), ("--policy", policy), ("--compatibility", compatibility)):
        if value is not None and not quality:
            raise ConfigError(f"{flag}: only used with --quality")
    if compatibility is not None and out is None:
        raise ConfigError("--compatibility: needs --out (its runs are written there)")
    if quality:
        _inspect_quality(dataset, out, as_json, policy, compatibility, steps)
        return
    summary = dataset.summary()
    if as_json:
        _print_json(summary)
        return
    table = Table(title=str(dataset.path), show_header=False)
    for key, value in summary.items():
        if key == "streams":
            continue
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    out_console.print(table)
    streams = Table("stream", "kind", "dtype", "shape", "description", title="streams")
    for name, spec in dataset.streams.items():
        streams.add_row(name, spec.kind, spec.dtype, str(tuple(spec.shape)), spec.description)
    out_console.print(streams)
    if verify:
        out_console.print(f"fingerprint verified: {dataset.fingerprint}")


@app.command()
def train(
    policy: Annotated[
        str,
        typer.Argument(
            help="Policy name (see `clonekit list`), or idm: an inverse dynamics model for `clonekit label`."
        ),
    ],
    data: Annotated[Path, typer.Option(help="Dataset directory.")],
    out: Annotated[Path, typer.Option(help="Run directory to create (or continue with --resume).")],
    steps: Annotated[int, typer.Option(help="Gradient steps.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed for initialization and batch sampling.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Transitions per step.")] = 256,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 500,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue an interrupted run from its last checkpoint, asked for with its own settings (--steps "
            "may grow); changed settings are an error."
        ),
    ] = False,
    action_labels: Annotated[
        str,
        typer.Option(
            help="Stream to imitate as the action: action (executed) or expert_action (the expert's label where "
            "another action ran: DAgger relabeling, noise-injected demonstrations)."
        ),
    ] = "action",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Config override KEY=VALUE (JSON value) of the policy, or of the training loop for its settings "
            "without a flag (e.g. val_fraction=0.1, log_every=10); repeatable.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a policy on a dataset; writes checkpoints, TensorBoard scalars and the final weights."""
    from dataclasses import fields

    from clonekit.config import config_from_json
    from clonekit.policies import policy_classes
    from clonekit.train import TrainConfig, shutdown_distributed
    from clonekit.train import train as run_train

    overrides = _parse_overrides(set_ or [])
    config = TrainConfig(
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        lr=lr,
        checkpoint_every=checkpoint_every,
        device=device,
        action_labels=action_labels,
    )
    # A key of the training loop's config (and not of the policy's) sets the loop; the rest go to the policy.
    loop_keys = {f.name for f in fields(TrainConfig)}
    if loop_keys & set(overrides):
        loop_keys -= {f.name for f in fields(policy_classes(policy)[0])}
        loop = {key: overrides.pop(key) for key in list(overrides) if key in loop_keys}
        config = config_from_json(TrainConfig, config_to_json(config) | loop, "--set")
    try:
        run_train(
            policy,
            data,
            out,
            config,
            policy_overrides=overrides,
            resume=resume,
            show_progress=not quiet,
            same_settings=True,
        )
    finally:
        shutdown_distributed()
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process reports
        out_console.print(f"trained {policy} for {config.steps} steps: {out}")


@app.command(name="eval")
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory written by `clonekit train`.")],
    episodes: Annotated[int, typer.Option(help="Episodes to play.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed: fixes start states and the unseen tasks.")] = 0,
    split: Annotated[str, typer.Option(help="train (tasks in the data) or test (unseen tasks).")] = "test",
    tasks: Annotated[
        int | None, typer.Option(help="Number of unseen tasks for --split test (default 25; gym: one per episode).")
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(help="Env to evaluate on instead of the dataset's, e.g. gym:CartPole-v1 (data made elsewhere)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON (last line).")] = False,
    batch_size: Annotated[
        int, typer.Option(help="Episodes played together; each wave is seeded on its own (and is one Ray task).")
    ] = 256,
    ray: RayFlag = False,
    ray_address: RayAddress = None,
    workers: RayWorkers = None,
    show_thoughts: Annotated[
        bool,
        typer.Option(
            help="Print each episode's thoughts (a policy that thinks, e.g. thought_cloning) and write "
            "them to RUN/thoughts_SPLIT.jsonl, with a PNG strip of the first episode."
        ),
    ] = False,
    halt_on: Annotated[
        list[str] | None, typer.Option(help="With --show-thoughts: halt an episode when its thought has this phrase.")
    ] = None,
    thought_control: Annotated[
        str | None,
        typer.Option(
            help="thought_cloning: choose the thought acted on per step: greedy, sticky:MARGIN, rerank:K[:LAMBDA], "
            "patience:K[:M] or commit[:WORD] (see clonekit.policies.thought_cloning.control); reports thought "
            "metrics and cost."
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="torch, or onnxruntime: run the policy's exported ONNX model (stateless policies; "
            "pip install 'clonekit[onnx]')."
        ),
    ] = "torch",
    attack: Annotated[
        str | None,
        typer.Option(
            help="Also evaluate under an observation attack, fgsm or pgd (perturbed observations are fed as float32 "
            "inside the observation bounds); reports success under attack and attack success."
        ),
    ] = None,
    epsilon: Annotated[
        float | None,
        typer.Option(help="With --attack: L-infinity radius in the policy's normalized observation units."),
    ] = None,
    attack_steps: Annotated[int, typer.Option(help="With --attack pgd: PGD iterations.")] = 10,
    target_action: Annotated[
        str | None,
        typer.Option(help="With --attack: push the policy to this action (an integer, or a JSON list if continuous)."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar (drawn on stderr; stdout has the results).")] = False,
) -> None:
    """Evaluate a trained policy with batched rollouts; metrics with 95% bootstrap CIs."""
    from clonekit.evaluation import evaluate_run, format_metric
    from clonekit.evaluation.attacks import attack_from_options, attack_metrics, evaluate_attack_run

    ray_options = _ray_options(ray, ray_address, workers)
    attack_config = attack_from_options(attack, epsilon, attack_steps, target_action)
    attacked: dict[str, Any] = {}
    if attack_config is not None:
        if show_thoughts or backend != "torch" or ray_options:
            raise ConfigError("--attack: runs with --backend torch, without --ray and --show-thoughts")
        played = evaluate_attack_run(
            run, split, episodes, seed, attack_config, tasks, batch_size, env, show_progress=not quiet
        )
        attacked = {"config": config_to_json(attack_config), "metrics": attack_metrics(played, seed)}
    if show_thoughts or thought_control is not None:
        from clonekit.policies.thought_cloning.control import parse_thought_control

        control = parse_thought_control(thought_control) if thought_control is not None else None
        if backend != "torch":
            raise ConfigError("--show-thoughts: needs --backend torch (thoughts come from the torch policy's memory)")
        _evaluate_thoughts(
            run,
            split,
            episodes,
            seed,
            25 if tasks is None else tasks,
            batch_size,
            halt_on or [],
            as_json,
            not quiet,
            control=control,
            print_episodes=show_thoughts,
        )
        return
    results = evaluate_run(
        run,
        split,
        episodes,
        seed,
        num_tasks=tasks,
        max_parallel=batch_size,
        backend=backend,
        env=env,
        show_progress=not quiet,
        **ray_options,
    )
    metrics = results.metrics(seed)
    if as_json:
        extra = {"attack": attacked} if attacked else {}
        _print_json({"run": str(run), "split": split, "seed": seed, "metrics": metrics, **extra})
        return
    table = Table("metric", "mean [95% CI] n", title=f"{run} on {split}")
    for name, value in metrics.items():
        table.add_row(name, format_metric(value))
    for name, value in attacked.get("metrics", {}).items():
        table.add_row(f"{name} under {attack} eps={epsilon}", format_metric(value))
    out_console.print(table)


def _evaluate_thoughts(
    run: Path,
    split: str,
    episodes: int,
    seed: int,
    tasks: int,
    batch_size: int,
    halt_on: list[str],
    as_json: bool,
    show_progress: bool,
    control: Any = None,
    print_episodes: bool = True,
) -> None:
    """``clonekit eval --show-thoughts`` (or ``--thought-control``): play with the thoughts recorded, printed (with
    ``print_episodes``) and saved; with ``control`` (a ``ThoughtControl``) the thought per step is chosen by it."""
    from clonekit.checkpoint import load_policy, load_run_config
    from clonekit.envs import get_env_family
    from clonekit.evaluation import episodes_to_play, format_metric, split_tasks, summarize
    from clonekit.evaluation.thoughts import forbidden_phrases, overthinking, thought_rollout
    from clonekit.evaluation.viewer import write_thought_strip
    from clonekit.io import atomic_write_text
    from clonekit.progress import progress_bar

    env = load_run_config(run).get("dataset", {}).get("env", {})
    policy = load_policy(run)
    controlled = None
    if control is not None:
        from clonekit.policies.thought_cloning.control import ControlledThoughtPolicy

        policy = controlled = ControlledThoughtPolicy(policy, control)
    family = get_env_family(env.get("id", ""))
    task_list = split_tasks(env, split, seed, tasks)
    total = episodes_to_play(policy, family, task_list, episodes, env.get("kwargs", {}))
    with progress_bar(f"eval {split}", total=total, enabled=show_progress) as advance:
        played = thought_rollout(
            policy,
            family,
            task_list,
            episodes,
            seed,
            env.get("kwargs", {}),
            max_parallel=batch_size,
            halt_if=forbidden_phrases(halt_on) if halt_on else None,
            record_frames=1,  # where the env can render (see thought_rollout)
            on_episodes_end=advance if show_progress else None,
        )
    records: list[dict[str, Any]] = [
        {"episode": i, "success": bool(played.results.success[i]), "halted": bool(played.halted[i]), "thoughts": t}
        for i, t in enumerate(played.thoughts)
    ]
    atomic_write_text(run / f"thoughts_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    if played.frames:
        write_thought_strip(run / f"thoughts_{split}.png", played.frames[0], played.thoughts[0])
    metrics = {**played.results.metrics(seed)}
    metrics |= {name: summarize(v, seed) for name, v in overthinking(played.thoughts).items()}
    metrics["halted"] = summarize(played.halted.astype(bool), seed, groups=played.results.task_index)
    cost = {"thought_control": control.spec, **controlled.cost()} if controlled is not None else {}
    if as_json:
        _print_json({"run": str(run), "split": split, "seed": seed, "metrics": metrics, **cost})
        return
    for record in records if print_episodes else []:
        spans: list[str] = []
        for thought in record["thoughts"]:
            if not spans or spans[-1].rsplit(" ×", 1)[0] != thought:
                spans.append(f"{thought} ×1")
            else:
                head, count = spans[-1].rsplit(" ×", 1)
                spans[-1] = f"{head} ×{int(count) + 1}"
        status = "halted" if record["halted"] else ("success" if record["success"] else "failure")
        out_console.print(f"episode {record['episode']} ({status}): " + " → ".join(spans), markup=False)
    table = Table("metric", "mean [95% CI] n", title=f"{run} on {split} (thoughts in {run}/thoughts_{split}.jsonl)")
    for name, value in metrics.items():
        table.add_row(name, format_metric(value))
    out_console.print(table)
    if cost:
        out_console.print(
            f"thought control {cost['thought_control']}: {cost['decoder_sequences_per_step']:.2f} decoder sequences "
            f"and {cost['ms_per_step']:.3f} ms of policy time per env step"
        )


def _json_option(flag: str, text: str) -> dict[str, Any]:
    """A JSON object given on the command line; anything else is a clear error naming the flag."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{flag}: expected a JSON object, got {text!r} ({err.msg})") from err
    if not isinstance(value, dict):
        raise ConfigError(f"{flag}: expected a JSON object, got {text!r}")
    return value


@app.command(name="run")
def run_experiment(
    experiment: Annotated[str, typer.Argument(help="Experiment name (see `clonekit list`).")],
    out: Annotated[Path, typer.Option(help="Output directory (results.json, report.md, plots).")],
    seed: Annotated[int, typer.Option(help="Seed for everything, including which tasks are generated.")] = 0,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Training seeds, e.g. 0-4: one run per seed in OUT/seed_S, aggregated over seeds (IQM, mean, "
            "stratified bootstrap); replaces --seed."
        ),
    ] = None,
    quick: Annotated[bool, typer.Option(help="A small smoke-test version.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print results.json as the last stdout line.")] = False,
    ray: RayFlag = False,
    ray_address: RayAddress = None,
    workers: RayWorkers = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Experiment setting KEY=VALUE (JSON value) over the preset, e.g. steps=3000; repeatable."
        ),
    ] = None,
) -> None:
    """Run a named experiment end to end: data, training, evaluation, report and plots."""
    from clonekit.experiments import get_experiment

    spec = get_experiment(experiment)
    config = spec.config(quick, _parse_overrides(set_ or [])) if set_ else None

    def log(message: str) -> None:
        err_console.print(message) if as_json else out_console.print(message)

    ray_options = _ray_options(ray, ray_address, workers)
    if seeds is not None:
        from clonekit.experiments.seeds import parse_seeds, run_seeds

        seed_list = parse_seeds(seeds)
        results = run_seeds(spec, out, seed_list, quick, config, show_progress=not as_json, log=log, **ray_options)
        title = f"{experiment} (seeds {seeds}: mean over seeds{', quick' if quick else ''})"
    else:
        if ray_options and "ray" not in signature(spec.run).parameters:
            raise ConfigError(f"--ray: experiment {experiment!r} runs locally only")
        results = spec.run(out, seed, quick, show_progress=not as_json, log=log, config=config, **ray_options)
        title = f"{experiment} (seed {seed}{', quick' if quick else ''})"
    if as_json:
        _print_json(results)
        return
    table = Table(*spec.table_columns, title=title)
    for row in spec.table(results):
        table.add_row(*row)
    out_console.print(table)
    out_console.print(f"wrote {out / 'results.json'}, {out / 'report.md'} and plots in {out}")


@app.command()
def interactive(
    method: Annotated[str, typer.Argument(help="dagger, hg_dagger, sirius or rlif.")],
    data: Annotated[Path, typer.Option(help="Demonstration dataset the run starts from (only read).")],
    out: Annotated[Path, typer.Option(help="Run directory to create, or to continue after an interruption.")],
    rounds: Annotated[int, typer.Option(help="Interactive rounds (a rerun with more continues the run).")],
    episodes_per_round: Annotated[int | None, typer.Option(help="Episodes played per round (default 32).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for training, episodes and the simulated intervener.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Run setting KEY=VALUE (JSON value), e.g. train_steps=500, expert_noise=0.2, label_budget=2000; "
            "repeatable (see clonekit.interactive.InteractiveConfig).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    intervener: Annotated[
        str,
        typer.Option(help="simulated (the env's simulated intervener) or human (you, on the live page; ui extra)."),
    ] = "simulated",
    host: Annotated[
        str, typer.Option(help="--intervener human: address of the live page; anything but 127.0.0.1 needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="--intervener human: port of the live page.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(envvar="CLONEKIT_TOKEN", help="--intervener human: required by the page (?token=...)."),
    ] = None,
    step_interval: Annotated[
        float, typer.Option(help="--intervener human: seconds between the policy's steps on the page.")
    ] = 0.25,
) -> None:
    """Interactive imitation: each round trains, plays (under a simulated intervener, or you on the live page
    with --intervener human) and appends to RUN's dataset."""
    from clonekit.config import config_from_json
    from clonekit.interactive import InteractiveConfig, check_method, run_interactive

    check_method(method)
    if intervener not in ("simulated", "human"):
        raise ConfigError(f"--intervener: expected simulated or human, got {intervener!r}")
    if intervener == "simulated" and (host != "127.0.0.1" or port != 8765):
        raise ConfigError("--host/--port: only used with --intervener human (the live page)")
    settings = _parse_overrides(set_ or [])
    if episodes_per_round is not None:
        settings["episodes_per_round"] = episodes_per_round
    config = config_from_json(InteractiveConfig, settings, "--set")

    def log(line: str) -> None:
        out_console.print(line, soft_wrap=True)

    if intervener == "human":
        from clonekit.interactive.human import run_with_person

        run = run_with_person(method, data, out, rounds, seed, config, host, port, token, step_interval, not quiet, log)
    else:
        run = run_interactive(method, data, out, rounds, seed, config, show_progress=not quiet, log=log)
    out_console.print(
        f"{method}: {len(run.rounds)} rounds, {run.expert_labels} expert labels; dataset {run.dataset.path}, "
        f"final policy {run.policy_dir(len(run.rounds))}",
        soft_wrap=True,
    )


@app.command()
def convert(
    src: Annotated[
        Path,
        typer.Argument(
            help="Dataset to read: clonekit directory, Minari dataset or HDF5 file (robomimic- or D4RL-style)."
        ),
    ],
    dst: Annotated[Path, typer.Argument(help="Where to write the converted dataset.")],
    to: Annotated[str, typer.Option(help="Output format: clonekit, minari, hdf5 or d4rl.")] = "clonekit",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset at DST.")] = False,
) -> None:
    """Convert a dataset between clonekit, Minari, robomimic-style and D4RL-style HDF5 (SRC is only read)."""
    from clonekit.data.convert import convert as convert_dataset
    from clonekit.data.convert import detect_format

    source_format = detect_format(src)
    for warning in convert_dataset(src, dst, to, overwrite=overwrite):
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    out_console.print(f"converted {src} ({source_format}) -> {dst} ({to})")


@app.command()
def relabel(
    src: Annotated[Path, typer.Argument(help="Dataset to read (only read).")],
    dst: Annotated[Path, typer.Argument(help="Where to write the dataset with hindsight goals.")],
    strategy: Annotated[
        str,
        typer.Option(
            help="future: the goal of step t is the source at a random step t' >= t; final: at the last step."
        ),
    ] = "future",
    seed: Annotated[int, typer.Option(help="Seed of the goal draws (strategy future).")] = 0,
    copies: Annotated[int, typer.Option(help="Relabeled copies of each episode.")] = 1,
    keep_original: Annotated[
        bool | None,
        typer.Option(
            "--keep-original/--no-keep-original",
            help="Also write each episode with its own goals (needs a goal stream; default: when SRC has one).",
        ),
    ] = None,
    source: Annotated[str, typer.Option(help="Stream the goals are taken from.")] = "obs",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset at DST.")] = False,
) -> None:
    """Hindsight goal relabeling: write SRC with a goal stream of states its episodes reached (for goal_bc)."""
    from clonekit.data import Dataset
    from clonekit.data.relabel import hindsight_relabel

    dataset = Dataset.open(src)
    keep = "goal" in dataset.streams if keep_original is None else keep_original
    relabeled = hindsight_relabel(
        dataset,
        dst,
        seed=seed,
        strategy=strategy,
        copies=copies,
        keep_original=keep,
        source=source,
        overwrite=overwrite,
    )
    out_console.print(
        f"wrote {relabeled.path}: {relabeled.num_episodes} episodes, {relabeled.num_steps} steps, "
        f"goals from {source!r} ({strategy}, {copies} cop{'y' if copies == 1 else 'ies'}"
        f"{', originals kept' if keep else ''})",
        soft_wrap=True,
    )


@app.command()
def label(
    data: Annotated[Path, typer.Argument(help="Observation-only dataset (no 'action' stream); only read.")],
    idm: Annotated[
        Path, typer.Option("--idm", help="Run directory of an inverse dynamics model (clonekit train idm).")
    ],
    out: Annotated[Path, typer.Option(help="Where to write the dataset with the labelled 'action' stream.")],
    batch_size: Annotated[int, typer.Option(help="Steps labelled at once.")] = 4096,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset at --out.")] = False,
) -> None:
    """Fill the missing action stream of DATA with an inverse dynamics model's labels (VPT); DATA is only read."""
    from clonekit.policies.idm.label import label_dataset

    if batch_size < 1:
        raise ConfigError(f"--batch-size: expected >= 1, got {batch_size}")
    labelled = label_dataset(data, idm, out, batch_size=batch_size, overwrite=overwrite)
    out_console.print(
        f"wrote {labelled.path}: {labelled.num_episodes} episodes, {labelled.num_steps} steps, "
        f"action labels from {idm}",
        soft_wrap=True,
    )


@app.command()
def retarget(
    data: Annotated[Path, typer.Argument(help="Dataset of the source embodiment (only read).")],
    to: Annotated[str, typer.Option("--to", help="Env family of the target embodiment, e.g. arm.")],
    out: Annotated[Path, typer.Option(help="Where to write the retargeted dataset.")],
    env_kwargs: Annotated[
        str, typer.Option("--env-kwargs", help="Target env options as JSON, e.g. '{\"links\": 3}'.")
    ] = "{}",
    seed: Annotated[int, typer.Option(help="Seed of the target start poses' inverse kinematics.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset at --out.")] = False,
) -> None:
    """Map DATA's episodes to another embodiment by kinematics (e.g. a 2-link arm's to a 3-link arm)."""
    from clonekit.data import Dataset
    from clonekit.quality.retarget import retarget as retarget_dataset

    summary = retarget_dataset(
        Dataset.open(data), to, _json_option("--env-kwargs", env_kwargs), out, seed=seed, overwrite=overwrite
    )
    errors = summary.path_errors
    worst = f"{errors.max():.4f}" if errors.size else "-"
    out_console.print(
        f"wrote {summary.dataset.path}: {summary.dataset.num_episodes} episodes, {summary.dataset.num_steps} steps "
        f"({summary.dropped} dropped: target not reached); largest end-effector distance from a source path {worst}",
        soft_wrap=True,
    )


@app.command(name="transfer-weights")
def transfer_weights(
    data: Annotated[Path, typer.Argument(help="Demonstrations, maybe from other dynamics (only read).")],
    target: Annotated[Path, typer.Option(help="A few episodes of the target dynamics (only read).")],
    out: Annotated[Path, typer.Option(help="Where to write DATA with the 'weight' stream.")],
    temperature: Annotated[float, typer.Option(help="Excess error (x the target's own) per e-fold of weight.")] = 1.0,
    steps: Annotated[int, typer.Option(help="Gradient steps of the forward-dynamics model.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the forward model and its hold-out draw.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset at --out.")] = False,
) -> None:
    """Weight DATA's episodes by how well they fit TARGET's dynamics (clonekit.quality.transfer); train with
    --set sample_weights='"weight"'."""
    from clonekit.data import Dataset
    from clonekit.quality.transfer import TransferConfig, write_transfer_weights

    config = TransferConfig(steps=steps, temperature=temperature, seed=seed)
    new, scores = write_transfer_weights(Dataset.open(data), Dataset.open(target), out, config, overwrite=overwrite)
    out_console.print(
        f"wrote {new.path}: {new.num_episodes} episodes, weight {scores.weight.min():.3g}-{scores.weight.max():.3g} "
        f"(mean {scores.weight.mean():.3g}); episodes with weight < 0.5: {int((scores.weight < 0.5).sum())}",
        soft_wrap=True,
    )


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run directory written by `clonekit train`.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write (obs -> action).")],
) -> None:
    """Export a trained policy to ONNX, normalization included (needs the 'onnx' extra of clonekit)."""
    from clonekit.export import export_onnx

    path = export_onnx(run, onnx)
    out_console.print(f"wrote {path}: ONNX model of {run} (input obs, dynamic batch axis)", soft_wrap=True)


def _inspect_quality(
    dataset: Any, out: Path | None, as_json: bool, policy: Path | None, compatibility: str | None, steps: int
) -> None:
    from clonekit.checkpoint import load_policy
    from clonekit.quality.policy_metrics import compatibility as leave_one_out
    from clonekit.quality.report import quality_report, report_markdown, write_report
    from clonekit.train import TrainConfig

    report = quality_report(dataset, policy=None if policy is None else load_policy(policy))
    if compatibility is not None and out is not None:
        config = TrainConfig(steps=steps, tensorboard=False, checkpoint_every=max(steps // 2, 1))
        report["compatibility"] = leave_one_out(dataset, compatibility, out / "compatibility", config)
    if out is not None:
        write_report(dataset, out, report=report)
    if as_json:
        _print_json(report)
        return
    out_console.print(report_markdown(report, []), soft_wrap=True, markup=False, highlight=False)
    if out is not None:
        out_console.print(f"wrote {out}/report.md, quality.json and plots", soft_wrap=True)


@app.command()
def curate(
    data: Annotated[Path, typer.Argument(help="Dataset directory (only read).")],
    out: Annotated[Path, typer.Option(help="New dataset directory.")],
    filters: Annotated[
        list[str],
        typer.Option(
            "--filter",
            help="success | top-k:N | min-return:X | drop-demonstrator:ID | min-agreement:X; repeatable, applied "
            "in order (see clonekit.quality.curate).",
        ),
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out dataset.")] = False,
    recovery: Annotated[
        str | None,
        typer.Option(
            help="Expert (e.g. bfs) that finishes every episode from its first mistake: adds recovery "
            "episodes (see clonekit.quality.recovery)."
        ),
    ] = None,
    judge: Annotated[
        str | None, typer.Option(help="With --recovery: py:module:attr, judge(obs, action) -> True for a mistake.")
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help="Transforms, comma-separated (rot90, flip-lr, obs-noise:S, time-shift:K, ...): adds "
            "augmented episodes the --guide accepts (see clonekit.quality.augment)."
        ),
    ] = None,
    guide: Annotated[
        str | None,
        typer.Option(
            help="With --augment: py:module:attr, guide(segment) -> bool, or rules such as grid-shortest-path,success."
        ),
    ] = None,
    segment_length: Annotated[int, typer.Option(help="With --augment: steps per segment (0: whole episodes).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of --recovery's expert and --augment's random transforms.")] = 0,
) -> None:
    """Write a curated copy of a dataset; what was removed, added and why is logged in its meta.json
    (extra.curation). --recovery splices every source episode; --augment transforms the episodes the filters keep."""
    from clonekit.data import Dataset
    from clonekit.quality.curate import AddedEpisodes, Filter, curate

    parsed = [Filter.parse(text) for text in filters]
    if judge is not None and recovery is None:
        raise ConfigError("--judge: only used with --recovery")
    if (augment is None) != (guide is None):
        raise ConfigError("--augment and --guide: give both (transforms and the guide that judges them) or neither")
    source = Dataset.open(data)
    added: list[AddedEpisodes] = []
    if recovery is not None:
        from clonekit.quality.pyspec import load_callable
        from clonekit.quality.recovery import recovery_episodes

        the_judge = load_callable(judge, "--judge") if judge is not None else None
        added.append(recovery_episodes(source, recovery, the_judge, seed=seed, judge_spec=judge))
    if augment is not None and guide is not None:
        from clonekit.quality.augment import augmented_episodes
        from clonekit.quality.curate import kept_episodes

        kept = kept_episodes(source, parsed)
        transforms = [t.strip() for t in augment.split(",")]
        added.append(
            augmented_episodes(source, transforms, guide, episodes=kept, segment_length=segment_length, seed=seed)
        )
    new = curate(source, out, parsed, overwrite=overwrite, added=added)
    kept_count = new.num_episodes - sum(len(a.episodes) for a in added)
    out_console.print(
        f"wrote {new.path}: kept {kept_count} of {source.num_episodes} episodes, removed "
        f"{source.num_episodes - kept_count} ({', '.join(map(str, parsed)) or 'no filter'})"
        + "".join(f", added {len(a.episodes)} ({a.step})" for a in added),
        soft_wrap=True,
    )


@app.command(name="improve")
def improve_policy(
    run: Annotated[Path, typer.Argument(help="A trained run (clonekit train); it and its dataset are only read.")],
    out: Annotated[Path, typer.Option(help="Run directory to create, or to continue after an interruption.")],
    rounds: Annotated[int, typer.Option(help="Rounds of attempt, keep, retrain (a rerun with more continues).")],
    attempts: Annotated[int, typer.Option(help="Episodes the policy plays per training task and round.")],
    keep: Annotated[str, typer.Option(help="success (every successful attempt) or best (best of N per task).")] = (
        "success"
    ),
    seed: Annotated[int, typer.Option(help="Seed for the attempts and the training of every round.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Run setting KEY=VALUE (JSON value), e.g. temperature=0.5, cut_loops=true, failures=prefix, "
            "train_steps=2000; repeatable (see clonekit.quality.improve.ImproveConfig).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Self-improvement (STaR / OREAL): the policy tries every training task, keeps its successes, retrains."""
    from clonekit.config import config_from_json
    from clonekit.quality.improve import ImproveConfig, improve

    settings = {**_parse_overrides(set_ or []), "attempts": attempts, "keep": keep}
    config = config_from_json(ImproveConfig, settings, "--set")

    def log(line: str) -> None:
        out_console.print(line, soft_wrap=True)

    result = improve(run, out, rounds, seed, config, show_progress=not quiet, log=log)
    out_console.print(
        f"{len(result.rounds)} rounds; dataset {result.dataset.path} ({result.dataset.num_episodes} episodes), "
        f"final policy {result.policy_dir(len(result.rounds))}",
        soft_wrap=True,
    )


@app.command(name="sweep-demos")
def sweep_demos(
    data: Annotated[Path, typer.Argument(help="Dataset directory (only read); its env gives the unseen test tasks.")],
    out: Annotated[Path, typer.Option(help="Output directory (results.json, report.md, threshold.png, runs).")],
    counts: Annotated[
        str | None,
        typer.Option(help="Numbers of demonstrations, increasing, e.g. 5,10,20,40 (default: 4 log-spaced up to all)."),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Training seeds per count (>= 2).")] = 3,
    target: Annotated[float, typer.Option(help="Success to reach, in (0, 1].")] = 0.8,
    policy: Annotated[str, typer.Option(help="Policy to train (see `clonekit list`).")] = "bc",
    steps: Annotated[int, typer.Option(help="Gradient steps of every run.")] = 500,
    tasks: Annotated[int, typer.Option(help="Unseen test tasks every run is evaluated on.")] = 50,
    episodes: Annotated[int, typer.Option(help="Evaluation episodes per run.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the test tasks and the evaluation.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Imitation threshold: success vs number of demonstrations, and the smallest count reaching --target."""
    from clonekit.data import Dataset
    from clonekit.quality.threshold import SweepConfig, log_counts, parse_counts
    from clonekit.quality.threshold import sweep_demos as run_sweep

    chosen = parse_counts(counts) if counts is not None else None
    dataset = Dataset.open(data)
    config = SweepConfig(
        counts=chosen or log_counts(dataset.num_episodes),
        seeds=seeds,
        target=target,
        policy=policy,
        train_steps=steps,
        test_tasks=tasks,
        eval_episodes=episodes,
    )
    results = run_sweep(dataset, out, config, seed, show_progress=not quiet, log=out_console.print)
    found = results["threshold"]
    reached = f"{found['count']} demonstrations" if found is not None else "not reached"
    out_console.print(f"threshold (mean success >= {target}): {reached}; wrote {out}/report.md", soft_wrap=True)


@app.command()
def serve(
    path: Annotated[Path, typer.Argument(help="A dataset, run or experiment directory.")],
    host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1 needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(envvar="CLONEKIT_TOKEN", help="Required on every request (?token=...); open the page with it."),
    ] = None,
    live: Annotated[
        bool, typer.Option("--live", help="PATH is a run: also serve /live, where its policy plays and you take over.")
    ] = False,
    live_dir: Annotated[
        Path | None, typer.Option(help="With --live: where the played steps are saved (default PATH/live).")
    ] = None,
    split: Annotated[str, typer.Option(help="With --live: the tasks to play (train or test).")] = "test",
    seed: Annotated[int, typer.Option(help="With --live: seed of the task draw.")] = 0,
    step_interval: Annotated[float, typer.Option(help="With --live: seconds between the policy's steps.")] = 0.25,
) -> None:
    """Browse a dataset, run or experiment in the browser: episodes, frames, annotation streams, plots; with
    --live, watch a run's policy play and take over from it (ui extra)."""
    from clonekit.interactive.browse import Browse
    from clonekit.interactive.server import check_bind, require_ui, serve

    check_bind(host, token)
    require_ui()
    browse = Browse(path)
    session = None
    if live:
        from clonekit.interactive.live import live_session_for_run

        if not step_interval > 0:
            raise ConfigError(f"--step-interval: expected a number of seconds > 0, got {step_interval}")
        session = live_session_for_run(path, live_dir or Path(path) / "live", split, seed)
    elif live_dir is not None:
        raise ConfigError("--live-dir: only used with --live")
    query = f"?token={token}" if token else ""
    page = "live" if live else ""
    err_console.print(
        f"serving {escape(str(path))} at http://{host}:{port}/{page}{query} (Ctrl+C stops)", soft_wrap=True
    )
    serve(browse, host=host, port=port, token=token, live=session, step_interval=step_interval)


rl_app = typer.Typer(
    help="Online reinforcement learning (PPO, SAC), optionally pulled towards a BC prior.", no_args_is_help=True
)
app.add_typer(rl_app, name="rl")


@rl_app.command(name="ppo")
def rl_ppo(
    env: Annotated[str, typer.Option(help="Gymnasium id, e.g. CartPole-v1 or clonekit/Maze-v0 (or gym:ID).")],
    steps: Annotated[int, typer.Option(help="Env steps to train for (summed over the envs).")],
    out: Annotated[Path, typer.Option(help="Run directory to create (or continue with --resume).")],
    seed: Annotated[int, typer.Option(help="Seed for the networks, the actions drawn and the env resets.")] = 0,
    prior: Annotated[
        Path | None, typer.Option(help="A bc / continuous_bc run to pull the policy towards (demo-regularized RL).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="PPO config override KEY=VALUE (JSON value), e.g. num_envs=16; repeatable."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train PPO on a gymnasium env; the run's actor loads as a clonekit policy (`clonekit eval RUN`)."""
    from clonekit.config import config_from_json
    from clonekit.rl import PPOConfig, train_ppo

    given = {"env": env, "total_steps": steps, "seed": seed} | ({"prior": str(prior)} if prior else {})
    config = config_from_json(PPOConfig, given | _parse_overrides(set_ or []), "rl ppo")
    train_ppo(config, out, resume=resume, show_progress=not quiet)
    out_console.print(f"trained ppo on {config.env} for {config.num_iterations * config.batch_size} env steps: {out}")


@rl_app.command(name="sac")
def rl_sac(
    env: Annotated[str, typer.Option(help="Gymnasium id with Box actions, e.g. Pendulum-v1 (or gym:ID).")],
    steps: Annotated[int, typer.Option(help="Env steps to train for (summed over the envs).")],
    out: Annotated[Path, typer.Option(help="Run directory to create (or continue with --resume).")],
    seed: Annotated[int, typer.Option(help="Seed for the networks, the actions drawn and the env resets.")] = 0,
    prior: Annotated[
        Path | None, typer.Option(help="A continuous_bc run to pull the actor towards (demo-regularized SAC).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="SAC config override KEY=VALUE (JSON value), e.g. lr=0.001; repeatable."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train SAC on a gymnasium env with continuous actions; the run's actor loads as a clonekit policy
    (`clonekit eval RUN`)."""
    from clonekit.config import config_from_json
    from clonekit.rl import SACConfig, train_sac

    given = {"env": env, "total_steps": steps, "seed": seed} | ({"prior": str(prior)} if prior else {})
    config = config_from_json(SACConfig, given | _parse_overrides(set_ or []), "rl sac")
    train_sac(config, out, resume=resume, show_progress=not quiet)
    out_console.print(f"trained sac on {config.env} for {config.num_iterations * config.num_envs} env steps: {out}")


def _rl_adversarial(
    method: str, env: str, demos: Path, steps: int, out: Path, seed: int, resume: bool, set_: list[str], quiet: bool
) -> None:
    """`clonekit rl gail|airl|gaifo`: build the config, train, print where the run is."""
    from clonekit.config import config_from_json
    from clonekit.rl.adversarial import AdversarialConfig, train_adversarial

    given = {"method": method, "env": env, "demos": str(demos), "total_steps": steps, "seed": seed}
    config = config_from_json(AdversarialConfig, given | _parse_overrides(set_), f"rl {method}")
    train_adversarial(config, out, resume=resume, show_progress=not quiet)
    ppo = config.ppo()
    out_console.print(f"trained {method} on {config.env} for {ppo.num_iterations * ppo.batch_size} env steps: {out}")


AdversarialEnv = Annotated[str, typer.Option(help="Gymnasium id the demos were recorded in, e.g. CartPole-v1.")]
AdversarialSteps = Annotated[int, typer.Option(help="PPO env steps (summed over the envs).")]
AdversarialOut = Annotated[Path, typer.Option(help="Run directory to create (or continue with --resume).")]
AdversarialSeed = Annotated[int, typer.Option(help="Seed of PPO, the discriminator and the subsampling.")]
AdversarialResume = Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")]
AdversarialSet = Annotated[
    list[str] | None,
    typer.Option("--set", help="Setting KEY=VALUE (JSON value), e.g. subsample=20 or disc_updates=8; repeatable."),
]
AdversarialQuiet = Annotated[bool, typer.Option(help="No progress bar.")]


@rl_app.command(name="gail")
def rl_gail(
    env: AdversarialEnv,
    demos: Annotated[Path, typer.Option(help="Expert dataset with obs and action streams.")],
    steps: AdversarialSteps,
    out: AdversarialOut,
    seed: AdversarialSeed = 0,
    resume: AdversarialResume = False,
    set_: AdversarialSet = None,
    quiet: AdversarialQuiet = False,
) -> None:
    """GAIL: PPO on the reward of a discriminator D(s, a) of expert vs policy transitions (never the env's)."""
    _rl_adversarial("gail", env, demos, steps, out, seed, resume, set_ or [], quiet)


@rl_app.command(name="airl")
def rl_airl(
    env: AdversarialEnv,
    demos: Annotated[Path, typer.Option(help="Expert dataset with obs and action streams.")],
    steps: AdversarialSteps,
    out: AdversarialOut,
    seed: AdversarialSeed = 0,
    resume: AdversarialResume = False,
    set_: AdversarialSet = None,
    quiet: AdversarialQuiet = False,
) -> None:
    """AIRL: the discriminator's logit is g(s, a) + gamma h(s') - h(s) - log pi(a|s); PPO on its reward."""
    _rl_adversarial("airl", env, demos, steps, out, seed, resume, set_ or [], quiet)


@rl_app.command(name="gaifo")
def rl_gaifo(
    env: AdversarialEnv,
    demos: Annotated[Path, typer.Option(help="Expert dataset with an obs stream (actions not needed).")],
    steps: AdversarialSteps,
    out: AdversarialOut,
    seed: AdversarialSeed = 0,
    resume: AdversarialResume = False,
    set_: AdversarialSet = None,
    quiet: AdversarialQuiet = False,
) -> None:
    """GAIfO: imitation from observation, a discriminator D(s, s') on observation pairs; PPO on its reward."""
    _rl_adversarial("gaifo", env, demos, steps, out, seed, resume, set_ or [], quiet)


@rl_app.command(name="bco")
def rl_bco(
    env: AdversarialEnv,
    data: Annotated[Path, typer.Option(help="Expert dataset; only its obs stream is read (actions not needed).")],
    out: AdversarialOut,
    seed: Annotated[int, typer.Option(help="Seed of the random policy, the env resets and every training run.")] = 0,
    resume: AdversarialResume = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Setting KEY=VALUE (JSON value), e.g. pre_steps=20000 or alpha=0.25; repeatable."),
    ] = None,
    quiet: AdversarialQuiet = False,
) -> None:
    """BCO: an inverse dynamics model learned from the agent's own env steps labels the expert's observations,
    then behaviour cloning; BCO(alpha) repeats with the cloned policy acting (--set alpha=0.25 --set iterations=4).
    """
    from clonekit.config import config_from_json
    from clonekit.rl.bco import BCOConfig, train_bco

    given = {"env": env, "demos": str(data), "seed": seed}
    config = config_from_json(BCOConfig, given | _parse_overrides(set_ or []), "rl bco")
    train_bco(config, out, resume=resume, show_progress=not quiet)
    phases = config.iterations + 1
    out_console.print(f"trained bco on {config.env} with {config.total_env_steps} env steps ({phases} phases): {out}")


pretrain_app = typer.Typer(
    help="Pretrain representations on a dataset (no reward needed), for policies to load.", no_args_is_help=True
)
app.add_typer(pretrain_app, name="pretrain")
# `clonekit pretrain <method>` commands follow, one per method.


@pretrain_app.command(name="dynamo")
def pretrain_dynamo_command(
    data: Annotated[Path, typer.Option(help="Dataset whose image stream `obs` (C, H, W) is pretrained on.")],
    out: Annotated[Path, typer.Option(help="Encoder directory to create (policies load it with encoder_weights).")],
    steps: Annotated[int | None, typer.Option(help="Gradient steps (default: the config's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialization and batch sampling.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="DynaMo setting KEY=VALUE (JSON value), e.g. latent_action_dim=4; repeatable."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """DynaMo: pretrain a CNN encoder on the demonstrations' frames alone (latent inverse + forward dynamics);
    train a policy on it with `--set encoder_weights='"ENC"'` (and `freeze_encoder=true` to keep it fixed)."""
    from clonekit.config import config_from_json
    from clonekit.pretrain.dynamo import DynamoConfig, pretrain_dynamo

    given: dict[str, Any] = {"seed": seed} | ({"steps": steps} if steps is not None else {})
    config = config_from_json(DynamoConfig, given | _parse_overrides(set_ or []), "pretrain dynamo")
    done = pretrain_dynamo(config, data, out, show_progress=not quiet)
    out_console.print(
        f"pretrained a dynamo encoder ({done['out_dim']} features) on {done['frames']} frames: loss "
        f"{done['first_loss']:.3f} -> {done['final_loss']:.3f}: {out}"
    )


@pretrain_app.command(name="pasta")
def pretrain_pasta_command(
    data: Annotated[Path, typer.Option(help="Dataset of vector states (and continuous actions, when labelled).")],
    out: Annotated[Path, typer.Option(help="Directory to create (transformer_bc loads it with pretrained).")],
    steps: Annotated[int | None, typer.Option(help="Gradient steps (default: the config's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialization, windows and masks.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="PASTA setting KEY=VALUE (JSON value), e.g. window=8; repeatable."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """PASTA: pretrain a transformer over per-component state-action tokens by masked prediction on every
    trajectory; fine-tune it with `clonekit train transformer_bc --set tokenization='"component"'
    --set pretrained='"OUT"'` (same d_model, num_heads, num_layers, feedforward)."""
    from clonekit.config import config_from_json
    from clonekit.pretrain.pasta import PastaConfig, pretrain_pasta

    given: dict[str, Any] = {"seed": seed} | ({"steps": steps} if steps is not None else {})
    config = config_from_json(PastaConfig, given | _parse_overrides(set_ or []), "pretrain pasta")
    done = pretrain_pasta(config, data, out, show_progress=not quiet)
    out_console.print(
        f"pretrained pasta on {done['num_episodes']} episodes ({done['num_steps']} steps): held-out masked loss "
        f"{done['eval_loss_start']:.3f} -> {done['eval_loss_end']:.3f}: {out}"
    )


finetune_app = typer.Typer(
    help="Refine a trained policy online: a residual policy on a frozen one.", no_args_is_help=True
)
app.add_typer(finetune_app, name="finetune")


@finetune_app.command(name="residual")
def finetune_residual(
    base: Annotated[Path, typer.Option(help="A continuous_bc run (e.g. chunked diffusion) kept frozen.")],
    env: Annotated[str, typer.Option(help="The base run's env family, e.g. avoiding (its training tasks are used).")],
    steps: Annotated[int, typer.Option(help="PPO env steps (summed over the envs).")],
    out: Annotated[Path, typer.Option(help="Run directory to create (or continue with --resume).")],
    seed: Annotated[int, typer.Option(help="Seed of the residual, PPO's draws, the base's noise and the resets.")] = 0,
    env_kwargs: Annotated[
        str, typer.Option(help="Env options as JSON, e.g. '{\"finish_gate\": 0.03}' for precision avoiding.")
    ] = "{}",
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Residual/PPO setting KEY=VALUE (JSON value), e.g. scale=0.1; repeatable."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a residual policy by PPO on sparse reward on top of a frozen base run (ResiP); `clonekit eval OUT`
    then plays base + residual."""
    from clonekit.config import config_from_json
    from clonekit.rl.residual import ResidualRLConfig, train_residual

    given = {"base": str(base), "env": env, "total_steps": steps, "seed": seed}
    given["env_kwargs"] = _json_option("--env-kwargs", env_kwargs)
    config = config_from_json(ResidualRLConfig, given | _parse_overrides(set_ or []), "finetune residual")
    train_residual(config, out, resume=resume, show_progress=not quiet)
    out_console.print(
        f"trained a residual on {base} for {config.ppo().num_iterations * config.ppo().batch_size} env steps: {out}"
    )


@app.command(name="list")
def list_names() -> None:
    """List envs, experts, policies and experiments."""
    from clonekit.registry import catalog

    table = Table("kind", "name", "description")
    for kind, name, description in catalog():
        table.add_row(kind, name, description)
    out_console.print(table)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and return its exit code; user errors print one line and return 2."""
    code = _run_app(argv)
    trainer = sys.modules.get("clonekit.train")
    if trainer is not None:  # a torchrun worker ends here, without interpreter shutdown (see end_worker_process)
        trainer.end_worker_process(code)
    return code


def _run_app(argv: list[str] | None) -> int:
    try:
        app(args=argv, prog_name="clonekit")
    except ClonekitError as err:
        # The message is plain text: escaped, so brackets in it (``clonekit[onnx]``, paths) print as written.
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True, markup=True)
        return 2
    except SystemExit as exit_:  # typer's standalone mode ends with SystemExit (usage errors: code 2)
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
