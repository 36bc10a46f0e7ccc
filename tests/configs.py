"""Hydra configs composed from config/ and shrunk to seconds of CPU work, for tests."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from anira.compose import CONFIG_DIR

# Shrinks a scale to a few seconds of CPU work; the real values live in config/scale/*.yaml.
TINY_SCALE = [
    "scale.model.d_model=32",
    "scale.model.n_heads=2",
    "scale.model.execution=dense",
    "scale.train.steps=12",
    "scale.train.batch_size=16",
    "scale.train.warmup_steps=2",
    "scale.train.checkpoint_every=4",
    "scale.train.log_every=4",
    "scale.eval.batch_size=32",
]


def tiny_task(task: str) -> list[str]:
    return [f"task={task}", "task.scales.mini.n_train=96", "task.scales.mini.n_eval_per_size=4"]


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base=None):
        return compose(name, overrides=overrides)
