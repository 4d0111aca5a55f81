"""Meta-World's own scripted policies (``metaworld.policies``) as the ``scripted`` expert of env ``metaworld``.

Each task name has a hand-written policy in Meta-World (``ENV_POLICY_MAP``, e.g. ``"assembly-v3"`` ->
``SawyerAssemblyV3Policy``) that reads the 39 state features and returns the 4-D action; it is stateless and
deterministic, so an expert episode on a task (name, seed) replays exactly. The expert writes no annotation
streams.

:class:`ScriptedMetaWorldPolicy` is the same expert behind the :class:`clonekit.policies.Policy` interface,
so :func:`clonekit.evaluation.rollout` can score it on exactly the episodes a learned policy plays; it reads
the task from the observation's one-hot id (or the single task name).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clonekit.data import StreamSpec
from clonekit.envs.metaworld import BASE_OBS_SIZE, MetaWorldVecEnv, check_task_names
from clonekit.policies import Policy


def scripted_policy(name: str) -> Any:
    """A fresh instance of Meta-World's scripted policy for task ``name``."""
    check_task_names([name])
    from metaworld.policies import ENV_POLICY_MAP

    policy_cls: Any = ENV_POLICY_MAP[name]  # typed as the abstract base class
    return policy_cls()


def scripted_actions(policies: list[Any], obs: np.ndarray) -> np.ndarray:
    """``(B, 4)`` float32 actions of ``policies[i]`` on the 39 state features of ``obs[i]``."""
    state = np.asarray(obs, dtype=np.float64)[:, :BASE_OBS_SIZE]
    with warnings.catch_warnings():  # the policies warn on every action they clip to [-1, 1]
        warnings.filterwarnings("ignore", message="Constant", category=UserWarning)
        actions = np.stack([policy.get_action(row) for policy, row in zip(policies, state, strict=True)])
    return np.clip(actions, -1.0, 1.0).astype(np.float32)


class MetaWorldScriptedExpert:
    """Meta-World's scripted policy of each slot's task (no annotation streams).

    See the module docstring.
    """

    name = "scripted"

    def __init__(self) -> None:
        self._policies: list[Any] = []

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        """Annotation streams this expert writes: none."""
        return []

    def reset(self, env: MetaWorldVecEnv, seed: int | None = None) -> None:
        """Pick the scripted policy of every slot's task (the policies are deterministic; ``seed`` is unused)."""
        self._policies = [scripted_policy(task.name) for task in env.tasks]

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions ``(B, 4)`` float32 for observations ``(B, D)``; no annotations."""
        return scripted_actions(self._policies, obs), {}


class ScriptedMetaWorldPolicy(Policy):
    """The scripted expert as a (non-learned, deterministic) clonekit policy over the task ``names``.

    With several names the task of each row is read from the one-hot id after the 39 state features (as
    :class:`clonekit.envs.metaworld.MetaWorldVecEnv` appends it); with one name every row is that task.
    """

    name = "metaworld_scripted"

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = check_task_names(list(names))
        self._policies = [scripted_policy(n) for n in self.names]

    @property
    def deterministic(self) -> bool:
        return True

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        """Actions ``(B, 4)`` for ``obs["obs"]`` ``(B, D)``."""
        x = obs["obs"].cpu().numpy()
        ids = x[:, BASE_OBS_SIZE:].argmax(axis=1) if len(self.names) > 1 else np.zeros(len(x), dtype=np.int64)
        policies = [self._policies[int(i)] for i in ids]
        return torch.from_numpy(scripted_actions(policies, x)), state
