"""Recorded episodes as a replayable source: LeRobot datasets v2.0, v2.1 and v3.0 (see `lerobot`,
`writer`, `layout`) and saved sessions (see `source`)."""

from workbench.episodes.layout import DatasetFormatError, default_features
from workbench.episodes.lerobot import Episode, EpisodeFrame, LeRobotDataset, resolve_dataset
from workbench.episodes.writer import LeRobotDatasetWriter

__all__ = [
    "DatasetFormatError",
    "Episode",
    "EpisodeFrame",
    "LeRobotDataset",
    "LeRobotDatasetWriter",
    "default_features",
    "resolve_dataset",
]
