"""The training engine: loop, checkpoints, distributed training, evaluation."""
from purenoise.engine.checkpoint import load_checkpoint, save_checkpoint
from purenoise.engine.trainer import Trainer, TrainingDiverged, TrainingInterrupted, train

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "train", "load_checkpoint", "save_checkpoint"]
