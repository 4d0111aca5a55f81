"""minigrid's BabyAI bot as an expert that also says what it is doing: the ``thought`` stream.

At every step the bot replans and acts for the subgoal on top of its stack; that subgoal, as a short
sentence ("go to the red ball", "open the blue door", "pick up the yellow key", "drop the yellow key",
"explore"), is the step's thought. Optional noise (as in Thought Cloning, so an agent sees recoveries):
with probability ``action_noise`` a random action replaces the bot's (the bot then replans from where it
ended up), and with probability ``thought_noise`` the recorded thought is a random sentence of the same form.

Plan order (``plan_order``, a second procedure for the same missions): ``"bot"`` is minigrid's bot as it is;
``"reversed"`` carries out the two parts of every "A and B" instruction in the other order (B first), which
the mission allows ("and" leaves the order free; "then" and "after" fix it, and are kept). On a mission without
"and" both orders act identically. With ``plan_order`` given, a ``strategy`` stream records it per step (the
index in :data:`PLAN_ORDERS`), so demonstrations of both orders can be mixed and the order hidden or asked for.

The bot raises ``AssertionError`` on a few seeds of some levels; such an episode is stopped, marked in
``failed`` and left out of the dataset by the collector, which counts it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clonekit.data import StreamSpec, array_stream, text_stream
from clonekit.envs.babyai import NUM_ACTIONS, BabyAIVecEnv, object_name
from clonekit.errors import ConfigError

COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECTS = ("ball", "box", "key")
DONE_ACTION = 6
PLAN_ORDERS = ("bot", "reversed")


def subgoal_sentence(bot: Any) -> str:
    """The bot's current subgoal (top of its stack) as a short sentence."""
    if not bot.stack:
        return "done"
    subgoal = bot.stack[-1]
    kind = type(subgoal).__name__
    env = bot.mission.unwrapped
    front = env.grid.get(*env.front_pos)
    if kind == "GoNextToSubgoal":
        if subgoal.reason == "Explore":
            return "explore"
        return f"go to {_describe_target(env, subgoal.datum)}"
    if kind == "OpenSubgoal":
        return f"open the {object_name(front)}" if front is not None else "open the door"
    if kind == "CloseSubgoal":
        return f"close the {object_name(front)}" if front is not None else "close the door"
    if kind == "PickupSubgoal":
        return f"pick up the {object_name(front)}" if front is not None else "pick up"
    if kind == "DropSubgoal":
        return f"drop the {object_name(env.carrying)}" if env.carrying is not None else "drop"
    if kind == "ExploreSubgoal":
        return "explore"
    return kind.removesuffix("Subgoal").lower()


def _describe_target(env: Any, datum: Any) -> str:
    """ "the red ball" for an object or object description, "an empty cell" for a free position."""
    if hasattr(datum, "type") and hasattr(datum, "color"):  # a WorldObj or an ObjDesc
        color = f"{datum.color} " if datum.color is not None else ""
        return f"the {color}{datum.type}"
    cell = env.grid.get(int(datum[0]), int(datum[1]))
    return f"the {object_name(cell)}" if cell is not None else "an empty cell"


def random_sentence(rng: np.random.Generator) -> str:
    """A random thought of the bot's form (for thought noise)."""
    verb = ("go to the", "pick up the", "open the", "drop the")[int(rng.integers(4))]
    thing = "door" if verb == "open the" else OBJECTS[int(rng.integers(len(OBJECTS)))]
    return f"{verb} {COLORS[int(rng.integers(len(COLORS)))]} {thing}"


class BabyAIBotExpert:
    """minigrid's BabyAI bot, one per slot; its current subgoal is written as the thought stream.

    See the module docstring.

    Args:
        action_noise: Probability that a step's action is replaced by a uniformly random one. With noise, the
            bot's own action of every step is recorded too, as the ``expert_action`` stream: the label of a
            noise-injected demonstration (DART), which ``TrainConfig(action_labels="expert_action")`` trains on.
        thought_noise: Probability that a step's recorded thought is replaced by a random sentence.
        plan_order: ``None`` (minigrid's bot, no ``strategy`` stream) or one of :data:`PLAN_ORDERS`: the order in
            which the parts of an "A and B" instruction are carried out, recorded as the ``strategy`` stream.
    """

    name = "bot"

    def __init__(self, action_noise: float = 0.0, thought_noise: float = 0.0, plan_order: str | None = None) -> None:
        for field, value in (("action_noise", action_noise), ("thought_noise", thought_noise)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"expert bot: {field}: expected a probability in [0, 1], got {value!r}")
        if plan_order is not None and plan_order not in PLAN_ORDERS:
            raise ConfigError(f"expert bot: plan_order: expected one of {list(PLAN_ORDERS)}, got {plan_order!r}")
        self.plan_order = plan_order
        self.action_noise = float(action_noise)
        self.thought_noise = float(thought_noise)
        self._bots: list[Any] = []
        self._vec: BabyAIVecEnv | None = None
        self._taken: list[int | None] = []
        self._rng = np.random.default_rng(0)
        self.failed = np.zeros(0, dtype=bool)
        self._bot_errors: tuple[type[Exception], ...] = (AssertionError,)

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        """Annotation streams this expert writes."""
        streams = [text_stream("thought", "the BabyAI bot's current subgoal as a sentence, e.g. 'open the red door'")]
        if self.action_noise:
            streams.append(array_stream("expert_action", "int64", (), "the bot's own action (before noise)"))
        if self.plan_order is not None:
            streams.append(array_stream("strategy", "int64", (), f"index of the plan order in {list(PLAN_ORDERS)}"))
        return streams

    def reset(self, env: BabyAIVecEnv, seed: int | None = None) -> None:
        """One fresh bot per slot of ``env`` (already reset); ``seed`` fixes the noise."""
        from minigrid.utils.baby_ai_bot import BabyAIBot, DisappearedBoxError

        # Known bot failures: an assertion on some seeds, and a box opened (by a noisy action) that hid what
        # the bot was after. The episode is dropped and counted.
        self._bot_errors = (AssertionError, DisappearedBoxError)
        self._vec = env
        bot_class = _reversed_and_bot() if self.plan_order == "reversed" else BabyAIBot
        self._bots = [bot_class(e) for e in env.envs]
        self._taken = [None] * env.num_envs
        self._rng = np.random.default_rng(seed)
        self.failed = np.zeros(env.num_envs, dtype=bool)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions ``(B,)`` int64 and ``{"thought": (B,) object array of str}`` (and, with action noise,
        ``"expert_action"``: the bot's own actions ``(B,)``)."""
        assert self._vec is not None, "call reset(env) before act"
        b = self._vec.num_envs
        actions = np.full(b, DONE_ACTION, dtype=np.int64)
        labels = actions.copy()
        thoughts = np.array([""] * b, dtype=object)
        for i in np.flatnonzero(~self._vec.done):
            try:
                suggested = int(self._bots[i].replan(self._taken[i]))
            except self._bot_errors:  # a known bot failure: drop the episode, count it
                self.failed[i] = True
                continue
            thoughts[i] = subgoal_sentence(self._bots[i])
            action = labels[i] = suggested
            if self.action_noise and self._rng.random() < self.action_noise:
                action = int(self._rng.integers(NUM_ACTIONS - 1))  # never "done"
            if self.thought_noise and self._rng.random() < self.thought_noise:
                thoughts[i] = random_sentence(self._rng)
            # replan() with None assumes its suggestion was taken; pass the action only when it was not.
            self._taken[i] = action if action != suggested else None
            actions[i] = action
        if self.failed.any():
            self._vec.halt(self.failed)
        annotations = {"thought": thoughts}
        if self.action_noise:
            annotations["expert_action"] = labels
        if self.plan_order is not None:
            annotations["strategy"] = np.full(b, PLAN_ORDERS.index(self.plan_order), dtype=np.int64)
        return actions, annotations


def _reversed_and_bot() -> type:
    """minigrid's bot with the parts of every "A and B" instruction planned B first."""
    from minigrid.envs.babyai.core.verifier import AndInstr
    from minigrid.utils.baby_ai_bot import BabyAIBot

    class ReversedAndBot(BabyAIBot):
        def _process_instr(self, instr: Any) -> None:
            # The plan is a stack: the part pushed last is carried out first (minigrid pushes B, then A).
            if isinstance(instr, AndInstr):
                self._process_instr(instr.instr_a)
                self._process_instr(instr.instr_b)
                return
            super()._process_instr(instr)

    return ReversedAndBot
