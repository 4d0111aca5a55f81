"""Experts from outside clonekit: a Python callable, a Stable-Baselines3 model, an ONNX model, a clonekit run.

``clonekit collect ENV --expert SPEC`` accepts, besides the registered expert names:

* ``py:module:attr`` (``attr`` may be dotted): a callable ``obs -> action``, or an object with a
  ``get_action``, ``act`` or ``predict`` method (tried in that order); a class is instantiated first, with
  the ``--expert-kwargs`` as its keyword arguments. It is called **batched** by default, with observations
  ``(B, *obs_shape)``, and returns actions ``(B, *action_shape)``; with ``--expert-kwargs '{"batched":
  false}'`` it is called once per observation ``(*obs_shape)`` and returns one action. A tuple result is read
  as ``(action, state)`` (SB3's convention) and its first item is taken.
* ``PATH.zip``: a Stable-Baselines3 model (any algorithm), acting deterministically (needs ``clonekit[sb3]``).
  SB3's loader unpickles parts of the file: load only models you trust. A model trained inside SB3's
  ``VecNormalize`` acts on normalized observations: ``--expert-kwargs '{"vec_normalize": "PATH.pkl"}'`` (the
  file ``VecNormalize.save`` writes, also unpickled) normalizes each observation with its statistics first, as
  SB3 does at test time (``training=False``). A model trained inside ``VecFrameStack(env, k)`` acts on the last
  ``k`` observations: ``--expert-kwargs '{"frame_stack": k}'`` stacks them as SB3 does (zeros before an episode's
  first observation; along the channel axis of pictures, the last axis otherwise), after the normalization. A
  model whose observations have another shape than the env's is a one-line error that names both.
* ``PATH.onnx``: an ONNX model taking ``obs`` and returning the action first, as ``clonekit export`` writes
  (needs ``clonekit[onnx]``). Random-draw inputs of a stochastic head are fed: ``noise`` standard normal,
  ``component_noise`` and ``bin_noise`` Exp(1), drawn from the collection's seed.
* a clonekit run directory (``config.json`` + ``model.safetensors``): the trained policy as the teacher.

Every outside expert sees the observations as clonekit records them (a Dict or Tuple observation flattened, a
channel-last picture channel-first; see :mod:`clonekit.envs.gym`). Box actions are clipped to the action space
before they run, so the recorded action is the executed one. Collection records the spec, the kind and (for
files) a sha256 of the expert in the dataset's env block (``expert``, ``expert_source``). Actions of a Box with
more than one dimension, or of a MultiDiscrete or MultiBinary space, may come in the env's own form or as clonekit
records them (flattened, or one joint Discrete; see :mod:`clonekit.envs.gym`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium
import numpy as np
import torch

from clonekit.data import StreamSpec
from clonekit.envs.family import VecEnv
from clonekit.envs.gym import MAX_CHANNELS, recorded_actions
from clonekit.errors import ConfigError

ACTION_METHODS = ("get_action", "act", "predict")
# Input names of an exported stochastic head's random draws (see clonekit.export) and how to draw them.
_EXPONENTIAL_NOISE = ("component_noise", "bin_noise")


@runtime_checkable
class Expert(Protocol):
    """What ``collect`` asks of an expert (scripted, outside or registered by a plugin).

    ``streams(obs_shape)`` declares the annotation streams ``act`` returns besides the action (``[]`` for
    none). ``reset(env, seed)`` starts one episode per slot of the batched env (``env.num_envs`` slots);
    ``seed`` fixes any randomness of the expert for that batch. ``act(obs)`` maps observations
    ``(B, *obs_shape)`` to ``(actions (B, *action_shape), {stream: (B, ...)})``. An expert may expose
    ``failed`` (``(B,)`` bool): episodes it could not finish, which ``collect`` leaves out and counts.
    """

    name: str

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]: ...

    def reset(self, env: VecEnv, seed: int | None = None) -> None: ...

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


def is_outside_spec(spec: str) -> bool:
    """True when ``spec`` names an outside expert rather than a registered expert name."""
    return (
        spec.startswith("py:")
        or spec.endswith((".zip", ".onnx"))
        or (os.sep in spec or "/" in spec or Path(spec).is_dir())
    )


class OutsideExpert:
    """A batched action function wrapped as an :class:`Expert` (no annotation streams).

    Args:
        name: The spec the expert was made from (recorded in the dataset).
        act_batch: ``obs (B, *obs_shape) -> actions (B, *action_shape)``.
        source: What the dataset records about the expert (kind, spec, file hash).
        reseed: Called with each batch's seed (for experts that draw random numbers).
    """

    def __init__(
        self,
        name: str,
        act_batch: Callable[[np.ndarray], Any],
        source: dict[str, Any],
        reseed: Callable[[int | None], None] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self._act_batch = act_batch
        self._reseed = reseed
        self._action_space: Any = None
        self._raw_action_space: Any = None

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        """None: an outside expert gives actions only."""
        return []

    def reset(self, env: VecEnv, seed: int | None = None) -> None:
        """Remember the env's action space (to check and clip actions) and reseed the expert's draws."""
        self._action_space = getattr(env, "action_space", None)
        raw = getattr(env, "raw_action_space", None)  # a gym env whose actions are recorded otherwise
        self._raw_action_space = raw if raw is not None and raw is not self._action_space else None
        if self._reseed is not None:
            self._reseed(seed)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions ``(B, *action_shape)`` for ``obs`` ``(B, *obs_shape)``, checked against the action space."""
        raw = self._act_batch(obs)
        if isinstance(raw, tuple):  # SB3-style (action, state)
            raw = raw[0]
        if isinstance(raw, torch.Tensor):
            raw = raw.detach().cpu().numpy()
        actions = np.asarray(raw)
        space = self._action_space
        shape = tuple(getattr(space, "shape", None) or ())
        raw_space = self._raw_action_space
        if raw_space is not None and actions.shape == (len(obs), *raw_space.shape):  # the env's own form
            if not isinstance(raw_space, gymnasium.spaces.Box) and not (
                np.all(actions == np.round(actions)) and all(raw_space.contains(a) for a in actions)
            ):
                raise ConfigError(f"expert {self.name}: actions outside {raw_space}: {actions[:4].tolist()}")
            actions = recorded_actions(actions, raw_space)
        if actions.shape != (len(obs), *shape):
            per_observation = " (a per-observation expert? pass --expert-kwargs '{\"batched\": false}')"
            hint = per_observation if actions.ndim == 0 else ""
            raise ConfigError(
                f"expert {self.name}: expected actions of shape {(len(obs), *shape)} for {len(obs)} observations, "
                f"got {actions.shape}{hint}"
            )
        if np.issubdtype(actions.dtype, np.floating) and not np.isfinite(actions).all():
            row = int(np.flatnonzero(~np.isfinite(actions.reshape(len(actions), -1)).all(axis=1))[0])
            found = f"found {actions[row]} for observation {row}"
            raise ConfigError(f"expert {self.name}: expected finite actions, {found}")
        if space is not None and hasattr(space, "n"):
            if not np.issubdtype(actions.dtype, np.integer) and not np.all(actions == np.round(actions)):
                raise ConfigError(f"expert {self.name}: expected integer actions for {space}, got {actions[:4]}")
            actions = actions.astype(np.int64)
            low, high = int(space.start), int(space.start + space.n - 1)
            if actions.min() < low or actions.max() > high:
                raise ConfigError(f"expert {self.name}: actions outside {space}: {actions[:8]}")
        elif space is not None and hasattr(space, "low"):
            actions = np.clip(actions.astype(space.dtype), space.low, space.high)
        return actions, {}


def make_outside_expert(spec: str, **kwargs: Any) -> OutsideExpert:
    """The outside expert named by ``spec`` (see the module docstring); ``kwargs`` are ``--expert-kwargs``."""
    if spec.startswith("py:"):
        return _python_expert(spec, **kwargs)
    path = Path(spec)
    if spec.endswith(".zip") and set(kwargs) <= {"vec_normalize", "frame_stack"}:
        return _sb3_expert(spec, path, kwargs.get("vec_normalize"), kwargs.get("frame_stack", 1))
    if kwargs:
        accepted = " (a .zip takes vec_normalize and frame_stack)" if spec.endswith(".zip") else ""
        raise ConfigError(f"--expert-kwargs: expert {spec} takes no options{accepted}, got {sorted(kwargs)}")
    if spec.endswith(".onnx"):
        return _onnx_expert(spec, path)
    if path.is_dir():
        return _run_expert(spec, path)
    raise ConfigError(
        f"--expert {spec}: expected py:module:attr, a .zip (Stable-Baselines3), a .onnx file or a run directory; "
        "no such file or directory"
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _python_expert(spec: str, batched: bool = True, **kwargs: Any) -> OutsideExpert:
    """``py:module:attr``: a callable, or an object (or class) with get_action / act / predict."""
    module_name, sep, attr = spec.removeprefix("py:").partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--expert {spec}: expected py:module:attr (e.g. py:my_experts:oracle)")
    if not isinstance(batched, bool):
        raise ConfigError(f"--expert-kwargs batched: expected true or false, got {batched!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"--expert {spec}: cannot import module {module_name!r} ({err})") from err
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"--expert {spec}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if isinstance(target, type):
        target = target(**kwargs)
    elif kwargs:
        raise ConfigError(f"--expert-kwargs: {spec} is not a class, so it takes no options; got {sorted(kwargs)}")
    method = next((getattr(target, m) for m in ACTION_METHODS if callable(getattr(target, m, None))), None)
    if method is None and callable(target):
        method = target
    if method is None:
        raise ConfigError(
            f"--expert {spec}: expected a callable obs -> action or an object with one of {list(ACTION_METHODS)}, "
            f"found {type(target).__name__}"
        )
    act = _batched(spec, method) if batched else _per_observation(method)
    reseed = getattr(target, "seed", None)
    return OutsideExpert(spec, act, {"kind": "python", "batched": batched}, reseed if callable(reseed) else None)


def _batched(spec: str, method: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """``method`` called on the whole batch; the errors a per-observation function raises on a batch (numpy's
    TypeError/ValueError/IndexError) come back as one line saying how to call it per observation."""

    def act(obs: np.ndarray) -> Any:
        try:
            return method(obs)
        except (TypeError, ValueError, IndexError) as err:
            raise ConfigError(
                f"--expert {spec}: called with a batch of observations {obs.shape} it raised "
                f"{type(err).__name__}: {' '.join(str(err).split())[:120]}; for a per-observation expert pass "
                "--expert-kwargs '{\"batched\": false}'"
            ) from err

    return act


def _per_observation(method: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], np.ndarray]:
    def act(obs: np.ndarray) -> np.ndarray:
        actions = []
        for one in obs:
            action = method(one)
            actions.append(np.asarray(action[0] if isinstance(action, tuple) else action))
        return np.stack(actions)

    return act


def _sb3_expert(spec: str, path: Path, vec_normalize: Any = None, frame_stack: Any = 1) -> OutsideExpert:
    """A Stable-Baselines3 zip: its policy rebuilt from the file, whatever the algorithm, acting deterministically
    (on observations normalized by the ``VecNormalize`` statistics saved at ``vec_normalize``, when given, then
    stacked ``frame_stack`` at a time)."""
    if isinstance(frame_stack, bool) or not isinstance(frame_stack, int) or frame_stack < 1:
        raise ConfigError(f"--expert-kwargs frame_stack of {spec}: expected an integer >= 1, found {frame_stack!r}")
    if not path.is_file():
        raise ConfigError(f"--expert {spec}: file not found")
    try:
        from stable_baselines3.common.save_util import load_from_zip_file
    except ImportError as err:
        raise ConfigError(f"--expert {spec}: needs Stable-Baselines3; pip install 'clonekit[sb3]' ({err})") from err
    try:
        data, params, _ = load_from_zip_file(path, device="cpu", print_system_info=False)
        if data is None or params is None:
            raise ValueError("the file has no data or no parameters")
        policy = data["policy_class"](
            data["observation_space"], data["action_space"], lambda _: 0.0, **data.get("policy_kwargs", {})
        )
        policy.load_state_dict(params["policy"])
    except (KeyError, ValueError, TypeError, RuntimeError, OSError) as err:
        detail = " ".join(str(err).split())[:200]
        raise ConfigError(f"--expert {spec}: not a loadable Stable-Baselines3 model: {detail}") from err
    policy.set_training_mode(False)
    source: dict[str, Any] = {"kind": "sb3", "policy_class": type(policy).__name__, "sha256": _file_sha256(path)}
    normalize: Callable[[np.ndarray], np.ndarray] = np.asarray
    if vec_normalize is not None:
        normalize = _vec_normalize(spec, vec_normalize)
        source["vec_normalize_sha256"] = _file_sha256(Path(vec_normalize))
    stack = FrameStack(frame_stack)
    if frame_stack > 1:
        source["frame_stack"] = frame_stack
    expected = tuple(getattr(policy.observation_space, "shape", None) or ())

    def act(obs: np.ndarray) -> np.ndarray:
        stacked = stack(normalize(obs))
        found = stacked.shape[1:]
        # SB3 moves the channel axis of a channel-last picture itself when its model reads channel-first ones.
        if expected and found != expected and found != (*expected[1:], expected[0]):
            given = f"the env gives {found}" if frame_stack == 1 else f"{frame_stack} stacked ones are {found}"
            raise ConfigError(
                f"--expert {spec}: the model reads observations of shape {expected}, {given}"
                f"{_frame_stack_hint(expected, found) if frame_stack == 1 else ''}"
            )
        actions, _ = policy.predict(stacked, deterministic=True)
        return np.asarray(actions)

    return OutsideExpert(spec, act, source, stack.reset)


def _frame_stack_hint(expected: tuple[int, ...], found: tuple[int, ...]) -> str:
    """A hint when ``expected`` is ``k`` observations of shape ``found`` stacked as SB3 stacks them."""
    axis = FrameStack.axis(found)
    if len(expected) != len(found):
        return ""
    if any(e != f for i, (e, f) in enumerate(zip(expected, found, strict=True)) if i != axis):
        return ""
    frames, rest = divmod(expected[axis], found[axis])
    if rest or frames < 2:
        return ""
    return f" (a VecFrameStack of {frames}? pass --expert-kwargs '{{\"frame_stack\": {frames}}}')"


class FrameStack:
    """The last ``k`` observations of every slot stacked as SB3's ``VecFrameStack`` stacks them: zeros before the
    first observation after :meth:`reset` (a new batch of episodes), along the channel axis of a channel-first
    picture ``(C, H, W)`` and the last axis of anything else. ``k = 1`` passes observations through."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.frames: np.ndarray | None = None

    @staticmethod
    def axis(shape: tuple[int, ...]) -> int:
        """The axis of one observation ``shape`` along which frames are stacked."""
        channel_first = len(shape) == 3 and shape[0] <= MAX_CHANNELS < shape[-1]  # the gym family's picture rule
        return 0 if channel_first else len(shape) - 1

    def reset(self, seed: int | None = None) -> None:
        self.frames = None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if self.k == 1:
            return obs
        axis = 1 + self.axis(tuple(obs.shape[1:]))
        width = obs.shape[axis]
        if self.frames is None or self.frames.shape[0] != len(obs):
            shape = list(obs.shape)
            shape[axis] *= self.k
            self.frames = np.zeros(shape, dtype=obs.dtype)
        self.frames = np.roll(self.frames, -width, axis=axis)
        index = [slice(None)] * obs.ndim
        index[axis] = slice(-width, None)
        self.frames[tuple(index)] = obs
        return self.frames.copy()


def _vec_normalize(spec: str, value: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The observation normalization of the ``VecNormalize`` statistics file ``value`` (``vec_normalize``)."""
    import pickle

    from stable_baselines3.common.vec_env import VecNormalize

    where = f"--expert-kwargs vec_normalize of {spec}"
    if not isinstance(value, str) or not Path(value).is_file():
        raise ConfigError(f"{where}: expected the path of a file VecNormalize.save wrote, found {value!r}")
    try:
        with open(value, "rb") as file:
            stats = pickle.load(file)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError) as err:
        detail = " ".join(str(err).split())[:160]
        raise ConfigError(f"{where}: {value}: not a readable VecNormalize file ({detail})") from err
    if not isinstance(stats, VecNormalize):
        raise ConfigError(f"{where}: {value}: expected a pickled VecNormalize, found {type(stats).__name__}")
    if isinstance(stats.obs_rms, dict):
        raise ConfigError(f"{where}: {value}: expected statistics of array observations, found them per Dict key")
    stats.training = False
    return lambda obs: np.asarray(stats.normalize_obs(np.asarray(obs)))


def _onnx_expert(spec: str, path: Path) -> OutsideExpert:
    """An ONNX model ``obs -> action`` (plus random-draw inputs, fed as the module docstring says)."""
    if not path.is_file():
        raise ConfigError(f"--expert {spec}: file not found")
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ConfigError(f"--expert {spec}: needs onnxruntime; pip install 'clonekit[onnx]' ({err})") from err
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types, not exported under stable names
        raise ConfigError(f"--expert {spec}: not a loadable ONNX model: {' '.join(str(err).split())[:200]}") from err
    inputs = {i.name: i for i in session.get_inputs()}
    if "obs" not in inputs:
        raise ConfigError(f"--expert {spec}: expected an input named 'obs', found {sorted(inputs)}")
    unknown = [n for n in inputs if n not in ("obs", "noise", *_EXPONENTIAL_NOISE)]
    if unknown:
        raise ConfigError(f"--expert {spec}: inputs {unknown} cannot be fed during collection (only obs and noise)")
    obs_type = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(uint8)": np.uint8}.get(
        inputs["obs"].type, np.float32
    )
    if inputs["obs"].type == "tensor(int64)":
        obs_type = np.int64
    output = session.get_outputs()[0].name
    state = {"rng": np.random.default_rng(0)}

    def reseed(seed: int | None) -> None:
        state["rng"] = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        feeds: dict[str, np.ndarray] = {"obs": np.asarray(obs).astype(obs_type, copy=False)}
        for name, meta in inputs.items():
            if name == "obs":
                continue
            shape = (len(obs), *[d if isinstance(d, int) else 1 for d in meta.shape[1:]])
            draw = state["rng"].exponential if name in _EXPONENTIAL_NOISE else state["rng"].standard_normal
            feeds[name] = draw(size=shape).astype(np.float32)
        return np.asarray(session.run([output], feeds)[0])

    return OutsideExpert(spec, act, {"kind": "onnx", "sha256": _file_sha256(path)}, reseed)


def _run_expert(spec: str, path: Path) -> OutsideExpert:
    """A clonekit run directory: its trained policy acts (batched, with its memory carried across steps)."""
    from clonekit.checkpoint import MODEL_FILE, load_policy

    policy = load_policy(path)
    state: dict[str, Any] = {"memory": None}

    def reseed(seed: int | None) -> None:
        state["memory"] = None  # a new batch of episodes: fresh recurrent state, made at the first act
        if seed is not None:
            torch.manual_seed(seed)

    def act(obs: np.ndarray) -> torch.Tensor:
        if state["memory"] is None:
            state["memory"] = policy.initial_state(len(obs))
        with torch.inference_mode():
            action, state["memory"] = policy.act({"obs": torch.from_numpy(np.ascontiguousarray(obs))}, state["memory"])
        return action

    source = {"kind": "run", "policy": policy.name, "sha256": _file_sha256(path / MODEL_FILE)}
    return OutsideExpert(spec, act, source, reseed)


__all__ = ["ACTION_METHODS", "Expert", "OutsideExpert", "is_outside_spec", "make_outside_expert"]
