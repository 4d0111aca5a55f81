"""A dataset made of chosen episodes of another one (with their episode info), for studies that train on parts
of a set: best-of-N selections, the first ``k`` demonstrations of a threshold sweep."""

from __future__ import annotations

from pathlib import Path

from clonekit.data import Dataset, DatasetWriter
from clonekit.data.formats.source import python_scalar


def write_subset(source: Dataset, path: str | Path, episodes: list[int], rule: str) -> Dataset:
    """Episodes ``episodes`` of ``source``, in that order, as a dataset at ``path``; an existing ``path`` is
    opened as it is (a resumed study). ``meta.json`` ``extra["subset"]`` records the source and ``rule``."""
    path = Path(path)
    if path.exists():
        return Dataset.open(path)
    info_names = list(source.meta.get("episode_info", []))
    extra = {
        **source.extra,
        "subset": {"source": str(source.path), "source_fingerprint": source.fingerprint, "rule": rule},
    }
    extra.pop("splits", None)  # the source's recorded splits number its own episodes
    writer = DatasetWriter(
        path, list(source.streams.values()), spaces=source.spaces, env=source.env, episode_info=info_names, extra=extra
    )
    with writer:
        for k in episodes:
            info = {n: python_scalar(f"{source.path}: episode {k}", source.episode_info(n)[k]) for n in info_names}
            writer.add_episode(dict(source.episode(k)), info)
        return writer.close()


__all__ = ["write_subset"]
