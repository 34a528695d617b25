"""Recorded episodes as a replayable source: LeRobot v2.1 datasets (see `lerobot`)."""

from workbench.episodes.lerobot import (
    DatasetFormatError,
    Episode,
    EpisodeFrame,
    LeRobotDataset,
    LeRobotDatasetWriter,
    default_features,
)

__all__ = [
    "DatasetFormatError",
    "Episode",
    "EpisodeFrame",
    "LeRobotDataset",
    "LeRobotDatasetWriter",
    "default_features",
]
