"""GPU models as rows: the lookups the rest of the portal uses.

Labels (the row's `name` shown for a code) come from a small per-process table read at most once
every LABEL_TTL seconds, so pages that show GPU model names cost no query per page; a row saved or
deleted in this process clears it at once, other processes within LABEL_TTL. Anything that decides
(which models a call offers, GPUs per node, NVML names) reads the rows themselves."""

from __future__ import annotations

import time

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from allocations.models.nodes import GpuModel, nvml_name_key

LABEL_TTL = 60.0
_labels: dict[str, str] = {}
_read_at = 0.0


class UnknownGpuModel(Exception):
    """NVML product names that map to no GPU model (an operator adds them to one), or to more
    than one (saved outside the admin's check: an operator keeps them in one)."""

    def __init__(self, names: list[str], ambiguous: list[str] = ()) -> None:
        self.names = names
        parts = []
        if names:
            parts.append(
                "unknown GPU model: NVML reports "
                + ", ".join(f"“{n}”" for n in names)
                + "; add it to a GPU model's NVML names in the admin (GPU models)"
            )
        if ambiguous:
            parts.append(
                ", ".join(f"“{n}”" for n in ambiguous) + " is listed by several GPU models: keep it in one only"
            )
        super().__init__("; ".join(parts))


def gpu_model_labels() -> dict[str, str]:
    """Code → name of every GPU model (ordered by code)."""
    global _labels, _read_at
    now = time.monotonic()
    if now - _read_at > LABEL_TTL:
        _labels = dict(GpuModel.objects.order_by("code").values_list("code", "name"))
        _read_at = now
    return _labels


def gpu_model_label(code: str | None) -> str:
    """The name shown for a code; the code itself if no row has it (yet)."""
    if not code:
        return ""
    return gpu_model_labels().get(code, code)


def forget_labels() -> None:
    global _read_at
    _read_at = 0.0


@receiver([post_save, post_delete], sender=GpuModel)
def _row_changed(**kwargs) -> None:
    forget_labels()


def gpu_models_by_nvml_name() -> dict[str, GpuModel | None]:
    """NVML product name (compared by nvml_name_key) → its GPU model row; None for a name that
    several rows list (GpuModel.clean refuses that in the admin; never guess between them)."""
    found: dict[str, GpuModel | None] = {}
    for model in GpuModel.objects.all():
        for name in model.nvml_names:
            key = nvml_name_key(name)
            found[key] = model if key not in found else None
    return found
