# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""The machine a measurement ran on, named in every result: the same code runs at different speeds on different CPUs
and GPUs, and the LM head's share of a draft step moves with them."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what ``platform`` knows)."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return model or platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: Any = None) -> str:
    """``"cuda: <GPU>"`` for a CUDA ``device`` (default: CUDA when available), else ``"cpu: <model>, N threads"``."""
    import torch

    on_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if on_cuda:
        return f"cuda: {torch.cuda.get_device_name(device if device is not None else 0)}"
    threads = torch.get_num_threads()
    return f"cpu: {cpu_model()}, {threads} thread{'' if threads == 1 else 's'}"
