"""Nodes, GPUs, grants, assignments and access on nodes."""

from allocations.models.access import (
    JupyterSession,
    NodeAccount,
    NodeAccountEvent,
    ProvisioningTask,
    SshKey,
    UnixId,
)
from allocations.models.grants import AccessInterval, Assignment, Grant, GrantEvent
from allocations.models.metering import GpuSample, Notice, SampleBatch, UsageHour
from allocations.models.nodes import Gpu, GpuModel, Node, NodeEvent, NodeOperation

__all__ = [
    "AccessInterval",
    "Assignment",
    "Gpu",
    "GpuModel",
    "GpuSample",
    "Grant",
    "GrantEvent",
    "JupyterSession",
    "Node",
    "NodeAccount",
    "NodeAccountEvent",
    "NodeEvent",
    "NodeOperation",
    "Notice",
    "ProvisioningTask",
    "SampleBatch",
    "SshKey",
    "UnixId",
    "UsageHour",
]
