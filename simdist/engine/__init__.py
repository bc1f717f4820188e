"""The n-node synchronous data-parallel SGD engine: config, schedules, the loop and its history."""

from .config import TrainConfig
from .history import History
from .loop import run, train

__all__ = ["TrainConfig", "History", "train", "run"]
