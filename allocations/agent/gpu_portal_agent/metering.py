"""Metering: samples of every GPU (with each compute process's unix user), spooled on disk and
pushed to the portal with the token from the root-only push file."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import time

from .common import (
    SAMPLE_MAX_PROCESSES,
    SAMPLE_USER_RE,
    VERSION,
    AgentError,
    nvml_started,
    replace_file,
    replace_json,
    state_dir,
)
from .userland import real_uid

# -- metering: samples of every GPU, pushed to the portal ------------------------------------


def process_user(pid: int):
    """The unix user a process runs as (real uid), or None when it is gone."""
    uid = real_uid(pid)
    if uid is None:
        return None
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
    # The portal refuses a batch naming a user outside its rule (a directory name such as
    # 'LAB\\alice'): such a user is named by uid, so the batch, and the finding, still arrive.
    return name if SAMPLE_USER_RE.match(name) else str(uid)


def _sample_device(device: dict) -> dict:
    """One GPU's sample from NVML's answers (live or replayed), in the portal's units:
    utilisation %, memory MiB, power W, temperature °C."""
    util = device.get("utilization") or {}
    memory = device.get("memory_info") or {}
    power_mw = device.get("power_usage")
    processes = []
    # The portal takes at most SAMPLE_MAX_PROCESSES per GPU and refuses the whole batch beyond:
    # a researcher starting hundreds of CUDA processes must not blind the node. The ones using
    # the most memory are kept, the rest counted.
    found = sorted(device.get("compute_processes") or [], key=lambda p: -(p.get("usedGpuMemory") or 0))
    for proc in found[:SAMPLE_MAX_PROCESSES]:
        pid = int(proc["pid"])
        used = proc.get("usedGpuMemory")
        processes.append(
            {
                "pid": pid,
                # A replay has no live process to ask: it may name the user it recorded.
                "user": process_user(pid) or proc.get("user"),
                "memory_mib": int(used) // (1024 * 1024) if used is not None else None,
            }
        )
    return {
        "uuid": device["uuid"],
        "index": int(device["index"]),
        "utilization": util.get("gpu"),
        "memory_utilization": util.get("memory"),
        "memory_used_mib": int(memory["used"]) // (1024 * 1024) if memory.get("used") is not None else None,
        "power_w": round(power_mw / 1000, 3) if power_mw is not None else None,
        "temperature_c": device.get("temperature"),
        "ecc_uncorrected": device.get("ecc_uncorrected_volatile"),
        "xid_errors": device.get("xid_errors"),
        "processes": processes,
        "processes_dropped": max(0, len(found) - SAMPLE_MAX_PROCESSES),
    }


def _nvml_optional(call, *args):
    """NVML answers NOT_SUPPORTED for what a GPU lacks (ECC on consumer boards, power on some):
    such a field is null, never a failed sample."""
    import pynvml

    try:
        return call(*args)
    except pynvml.NVMLError:
        return None


def _nvml_live_devices() -> list:
    pynvml = nvml_started()
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            util = _nvml_optional(pynvml.nvmlDeviceGetUtilizationRates, h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            procs = _nvml_optional(pynvml.nvmlDeviceGetComputeRunningProcesses, h) or []
            devices.append(
                {
                    "index": i,
                    "uuid": pynvml.nvmlDeviceGetUUID(h),
                    "utilization": {"gpu": util.gpu, "memory": util.memory} if util else None,
                    "memory_info": {"total": mem.total, "free": mem.free, "used": mem.used},
                    "power_usage": _nvml_optional(pynvml.nvmlDeviceGetPowerUsage, h),
                    "temperature": _nvml_optional(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU),
                    "ecc_uncorrected_volatile": _nvml_optional(
                        pynvml.nvmlDeviceGetTotalEccErrors,
                        h,
                        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                        pynvml.NVML_VOLATILE_ECC,
                    ),
                    # XIDs arrive only as NVML events, not as a counter: none are read here.
                    "xid_errors": None,
                    "compute_processes": [{"pid": p.pid, "usedGpuMemory": p.usedGpuMemory} for p in procs],
                }
            )
        return devices
    finally:
        pynvml.nvmlShutdown()


def verb_sample(data: dict, config: dict) -> dict:
    """Every GPU's utilisation, memory, power, temperature, errors and compute processes (with
    their unix user) now, from NVML or its recorded answer (config nvml_replay)."""
    if config.get("nvml_replay"):
        with open(config["nvml_replay"]) as f:
            devices = json.load(f)["devices"]
    else:
        devices = _nvml_live_devices()
    return {"time": round(time.time(), 3), "gpus": [_sample_device(d) for d in devices]}


def _spool_dir(config: dict) -> str:
    path = os.path.join(state_dir(config), "spool")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _spool_counters(config: dict) -> dict:
    try:
        with open(os.path.join(state_dir(config), "spool-counters.json")) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {"dropped": 0, "rejected": 0}


def _save_spool_counters(config: dict, counters: dict) -> None:
    replace_json(os.path.join(state_dir(config), "spool-counters.json"), counters)


def spool_batch(config: dict, batch: dict) -> None:
    """Keep a batch on disk until the portal has it; beyond spool_max batches the oldest are
    dropped (and counted), so a node cut off for weeks never fills its disk."""
    directory = _spool_dir(config)
    name = f"{int(batch['samples'][0]['time'] * 1000):015d}-{batch['batch_id']}.json"
    replace_file(os.path.join(directory, name), json.dumps(batch).encode(), tmp=os.path.join(directory, "." + name))
    queued = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
    excess = len(queued) - max(1, int(config.get("spool_max", 1440)))
    if excess > 0:
        counters = _spool_counters(config)
        counters["dropped"] = counters.get("dropped", 0) + excess
        _save_spool_counters(config, counters)
        for stale in queued[:excess]:
            os.unlink(os.path.join(directory, stale))


def _post(url: str, token: str, body: bytes, timeout: float) -> tuple:
    import urllib.error
    import urllib.request

    if not url.startswith(("https://", "http://")):
        raise AgentError("push_unconfigured", "the push URL must be http(s)")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL from root's file
            return response.status, response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace")


def verb_push(data: dict, config: dict) -> dict:
    """Sample now, queue the batch, then send every queued batch oldest first. A batch leaves
    the queue once the portal stored it (or already had it: a resend counts once there) or
    refused it for good (4xx, counted); a network error, 5xx, 401/403 or 429 keeps it for the
    next run. The URL and token come only from the root-only push file, never from stdin,
    so nobody can have the token sent elsewhere."""
    try:
        with open(config["push_config"]) as f:
            push = json.load(f)
        url, token = push["url"], push["token"]
    except (OSError, ValueError, KeyError) as exc:
        raise AgentError("push_unconfigured", f"cannot read {config['push_config']}: {exc}") from exc
    if data.get("sample", True):
        sample = verb_sample({}, config)
        batch = {
            "batch_id": hashlib.sha256(os.urandom(32)).hexdigest()[:32],
            "agent_version": VERSION,
            "samples": [{"time": sample["time"], "gpus": sample["gpus"]}],
        }
        spool_batch(config, batch)
    directory = _spool_dir(config)
    counters = _spool_counters(config)
    sent, kept, error = 0, 0, ""
    timeout = float(push.get("timeout", 20))
    # A long backlog is sent over several runs: this one stops in time for the next minute's.
    deadline = time.monotonic() + float(push.get("max_seconds", 50))
    queued = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
    for index, name in enumerate(queued):
        if time.monotonic() > deadline:
            kept = len(queued) - index
            break
        path = os.path.join(directory, name)
        with open(path) as f:
            batch = json.load(f)
        batch["dropped_before"] = counters.get("dropped", 0)
        try:
            status, text = _post(url, token, json.dumps(batch).encode(), timeout)
        except OSError as exc:
            status, text = 0, str(exc)
        if 200 <= status < 300:
            os.unlink(path)
            sent += 1
            counters["dropped"] = 0  # the portal has heard about them now
            continue
        if 400 <= status < 500 and status not in (401, 403, 408, 429):
            os.unlink(path)  # refused for good: sending it again would be refused again
            counters["rejected"] = counters.get("rejected", 0) + 1
            error = f"{status}: {text[:300]}"
            continue
        kept = len(queued) - index
        error = f"{status or 'unreachable'}: {text[:300]}"
        break
    _save_spool_counters(config, counters)
    return {"sent": sent, "queued": kept, "dropped": counters.get("dropped", 0),
            "rejected": counters.get("rejected", 0), "error": error}  # fmt: skip
