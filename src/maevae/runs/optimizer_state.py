"""Optimizer state as safetensors tensors + JSON param groups (no pickle)."""

from __future__ import annotations

import torch

__all__ = ["optimizer_from_tensors", "optimizer_to_tensors"]


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """An optimizer's state as ``(tensors, param_groups)``: tensors named
    ``<param index>.<key>`` (for safetensors) and the groups as plain data (for JSON)."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in sd["param_groups"]]
    return tensors, groups


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           groups: list) -> None:
    """Load into ``opt`` the state :func:`optimizer_to_tensors` made."""
    state: dict[int, dict] = {}
    for name, v in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": groups})
