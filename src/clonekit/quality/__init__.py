"""Data quality: measure a demonstration set, find its bad parts, and curate it (see ``clonekit inspect
--quality`` and ``clonekit curate``)."""

from clonekit.quality.outcomes import EpisodeOutcomes, episode_outcomes

__all__ = ["EpisodeOutcomes", "episode_outcomes"]
