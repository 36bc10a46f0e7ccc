"""The ANIRA recurrent Transformer (``model``) and its packed execution (``packed``)."""

from anira.model.model import (
    AniraModel,
    ModelConfig,
    ModelOutput,
    kl_to_prior,
    log_prior,
    online_depth,
    online_log_q,
)

__all__ = [
    "AniraModel",
    "ModelConfig",
    "ModelOutput",
    "kl_to_prior",
    "log_prior",
    "online_depth",
    "online_log_q",
]
