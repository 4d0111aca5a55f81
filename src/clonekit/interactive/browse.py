"""What the browser viewer shows, independent of any web framework: datasets, episodes, steps and frames.

:class:`Browse` opens what ``clonekit serve PATH`` is given, which may be

* a dataset directory (``meta.json``),
* a run directory (``config.json``; its training dataset is shown when the recorded path still exists), or
* an experiment directory (``results.json``; every dataset under ``PATH/data`` and the plots in ``PATH``).

Episodes are listed with their length, return, outcome, demonstrator and number of intervention steps (see
:mod:`clonekit.quality.outcomes`), and can be filtered by them; one episode's annotation streams come per step
(scalars and text; array streams are summarized by their shape), and each step's observation as a PNG frame
when it can be drawn: through the env family's ``render_obs(obs)`` hook when it has one, else when the
observation is itself a picture (``(3, H, W)`` or ``(1, H, W)`` uint8) or a map of 0/1 channels (coloured per
channel, as the maze's are). Vector observations have no frame; the page shows their values instead.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data import Dataset
from clonekit.errors import ClonekitError, ConfigError
from clonekit.quality.outcomes import episode_outcomes

# Colours of the channels of a 0/1 channel map (later channels drawn over earlier ones).
CHANNEL_COLOURS = np.array(
    [(40, 40, 60), (220, 60, 50), (40, 170, 70), (60, 110, 220), (230, 170, 30), (150, 70, 180)], dtype=np.uint8
)
BACKGROUND = np.array((235, 235, 235), dtype=np.uint8)
FRAME_CELL = 8  # pixels per cell of a channel map
PER_STEP_LIMIT = 64  # array streams with at most this many values per step are shown as values


@dataclass(frozen=True)
class EpisodeRow:
    """One line of the episode list."""

    dataset: int
    index: int
    length: int
    ret: float
    success: bool
    demonstrator: str | None
    interventions: int

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "index": self.index,
            "length": self.length,
            "return": round(self.ret, 6),
            "success": self.success,
            "demonstrator": self.demonstrator,
            "interventions": self.interventions,
        }


def _is_dataset(path: Path) -> bool:
    return (path / "meta.json").is_file()


class Browse:
    """The datasets and plots under one path (see the module docstring); every problem is one-line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: expected a dataset, run or experiment directory, found nothing there")
        self.kind, dataset_paths = self._find()
        self.datasets = [Dataset.open(p) for p in dataset_paths]
        self.plots = sorted(p.name for p in self.path.glob("*.png") if p.is_file())
        self._rows = [self._episode_rows(i, d) for i, d in enumerate(self.datasets)]

    def _find(self) -> tuple[str, list[Path]]:
        if _is_dataset(self.path):
            return "dataset", [self.path]
        if (self.path / "config.json").is_file():
            config = json.loads((self.path / "config.json").read_text())
            recorded = Path(str((config.get("dataset") or {}).get("path", "")))
            return "run", [recorded] if recorded.name and _is_dataset(recorded) else []
        if (self.path / "results.json").is_file():
            data = self.path / "data"
            found = sorted(p for p in data.rglob("meta.json")) if data.is_dir() else []
            return "experiment", [p.parent for p in found]
        raise ConfigError(
            f"{self.path}: expected a dataset (meta.json), a run (config.json) or an experiment (results.json) "
            "directory, found none of them"
        )

    def summary(self) -> dict[str, Any]:
        """What the page shows first: the path, its kind, the datasets and the plots."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "datasets": [
                {
                    "index": i,
                    "path": str(d.path),
                    "num_episodes": d.num_episodes,
                    "num_steps": d.num_steps,
                    "env": d.env.get("id"),
                    "streams": sorted(d.streams),
                }
                for i, d in enumerate(self.datasets)
            ],
            "plots": self.plots,
        }

    def _episode_rows(self, which: int, dataset: Dataset) -> list[EpisodeRow]:
        facts = episode_outcomes(dataset)
        return [
            EpisodeRow(which, k, int(n), float(r), bool(ok), who, int(i))
            for k, (n, r, ok, who, i) in enumerate(
                zip(facts.length, facts.ret, facts.success, facts.demonstrator, facts.interventions, strict=True)
            )
        ]

    def episodes(
        self, success: bool | None = None, demonstrator: str | None = None, intervention: bool | None = None
    ) -> list[dict[str, Any]]:
        """The episode list, filtered: by outcome, by demonstrator id, by whether any step was an intervention."""
        rows = [row for rows in self._rows for row in rows]
        if success is not None:
            rows = [r for r in rows if r.success == success]
        if demonstrator is not None:
            rows = [r for r in rows if r.demonstrator == demonstrator]
        if intervention is not None:
            rows = [r for r in rows if (r.interventions > 0) == intervention]
        return [r.to_json() for r in rows]

    def _dataset(self, which: int) -> Dataset:
        if not 0 <= which < len(self.datasets):
            raise ConfigError(f"dataset {which}: expected an index in [0, {len(self.datasets)})")
        return self.datasets[which]

    def _episode(self, which: int, index: int) -> dict[str, Any]:
        dataset = self._dataset(which)
        if not 0 <= index < dataset.num_episodes:
            raise ConfigError(f"episode {index}: expected an index in [0, {dataset.num_episodes})")
        return dataset.episode(index)

    def steps(self, which: int, index: int) -> dict[str, Any]:
        """One episode's annotation streams per step: text and small arrays as values, big ones by shape."""
        dataset = self._dataset(which)
        episode = self._episode(which, index)
        streams: dict[str, Any] = {}
        for name, values in episode.items():
            if name == "obs":
                continue
            if isinstance(values, list):  # text
                streams[name] = [str(v) for v in values]
                continue
            array = np.asarray(values)
            per_step = int(np.prod(array.shape[1:], dtype=np.int64))
            if per_step <= PER_STEP_LIMIT:
                streams[name] = (
                    np.round(array.astype(np.float64), 6).tolist() if array.dtype.kind == "f" else (array.tolist())
                )
            else:
                streams[name] = f"array {tuple(array.shape[1:])} per step"
        obs = np.asarray(episode["obs"])
        family = _family(dataset)
        return {
            "dataset": which,
            "index": index,
            "length": int(obs.shape[0]),
            "frames": _drawable(obs[:1], family),
            "obs": obs.round(4).tolist() if obs.ndim == 2 and obs.shape[1] <= PER_STEP_LIMIT else None,
            "streams": streams,
        }

    def frame_png(self, which: int, index: int, step: int) -> bytes:
        """Step ``step`` of an episode drawn as a PNG (``ConfigError`` when the observation cannot be drawn)."""
        dataset = self._dataset(which)
        obs = np.asarray(self._episode(which, index)["obs"])
        if not 0 <= step < len(obs):
            raise ConfigError(f"step {step}: expected an index in [0, {len(obs)})")
        rgb = draw(obs[step : step + 1], _family(dataset))
        if rgb is None:
            raise ConfigError(f"dataset {dataset.path}: observations of shape {obs.shape[1:]} have no picture")
        return encode_png(rgb[0])

    def plot_path(self, name: str) -> Path:
        """A plot listed in ``summary()['plots']`` (only those: no other file is served)."""
        if name not in self.plots:
            raise ConfigError(f"plot {name!r}: expected one of {self.plots}")
        return self.path / name


def _family(dataset: Dataset) -> Any:
    from clonekit.envs import get_env_family

    env_id = dataset.env.get("id")
    try:
        return get_env_family(env_id) if isinstance(env_id, str) else None
    except ClonekitError:  # an env clonekit does not know (imported data): drawn from the observations alone
        return None


def draw(obs: np.ndarray, family: Any = None) -> np.ndarray | None:
    """Pictures ``(T, H, W, 3)`` uint8 of observations ``(T, ...)``, or None when they are not drawable."""
    render = getattr(family, "render_obs", None)
    if render is not None:
        return np.asarray(render(obs), dtype=np.uint8)
    if obs.ndim != 4:
        return None
    channels = obs.shape[1]
    binary = obs.dtype == np.bool_ or (np.issubdtype(obs.dtype, np.number) and np.isin(obs, (0, 1)).all())
    if obs.dtype == np.uint8 and channels in (1, 3) and not binary:
        return np.repeat(obs, 3 // channels, axis=1).transpose(0, 2, 3, 1)
    if binary and channels <= len(CHANNEL_COLOURS):
        img = np.broadcast_to(BACKGROUND, (obs.shape[0], *obs.shape[2:], 3)).copy()
        for c in range(channels):
            img[obs[:, c] > 0] = CHANNEL_COLOURS[c]
        return img.repeat(FRAME_CELL, axis=1).repeat(FRAME_CELL, axis=2)
    return None


def _drawable(obs: np.ndarray, family: Any) -> bool:
    return draw(obs, family) is not None


def encode_png(rgb: np.ndarray) -> bytes:
    """An ``(H, W, 3)`` uint8 picture as PNG bytes (Pillow, from the ``ui`` extra)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG")
    return buffer.getvalue()
