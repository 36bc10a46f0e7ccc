"""The ANIRA recurrent Transformer (``model``): its settings (``config``), layers (``layers``),
routers (``routers``), core execution (``execution``) and cached decoding (``decode``)."""

from anira.model.config import ModelConfig
from anira.model.model import AniraModel, ModelOutput
from anira.model.routers import kl_to_prior, log_prior, online_depth, online_log_q

__all__ = [
    "AniraModel",
    "ModelConfig",
    "ModelOutput",
    "kl_to_prior",
    "log_prior",
    "online_depth",
    "online_log_q",
]
