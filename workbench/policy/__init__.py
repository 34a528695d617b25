"""The ST4VLA policy (InternVLA-M1 architecture): model, checkpoints, the spatial answer, actions.

Names are imported lazily so `import workbench.policy.normalization` stays light (no torch/transformers).
"""

from importlib import import_module

_EXPORTS = {
    "CheckpointError": "workbench.policy.checkpoint",
    "ST4VLAConfig": "workbench.policy.configuration",
    "internvla_m1_config": "workbench.policy.configuration",
    "tiny_config": "workbench.policy.configuration",
    "ST4VLAPolicy": "workbench.policy.policy",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench.policy' has no attribute {name!r}")
