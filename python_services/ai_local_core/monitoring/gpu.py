"""Per-GPU figures through NVML (the ``pynvml`` module of ``nvidia-ml-py``).

The module is imported when a snapshot is taken, not at import time, so a host
without the NVIDIA driver (no ``libnvidia-ml.so``) or without the package still
runs the exporter: :func:`read_gpus` then returns ``present=False`` with the
reason, and never raises. A figure one card does not support (``NOT_SUPPORTED``
on some boards for power or utilisation) is ``None`` and its series is left out.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["GpuSnapshot", "GpuStats", "read_gpus"]


class GpuStats(BaseModel):
    """One GPU as NVML reports it (units converted: bytes, degrees Celsius, watts)."""

    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    uuid: str
    utilization_percent: float | None = None
    memory_utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_celsius: float | None = None
    power_draw_watts: float | None = None
    power_limit_watts: float | None = None
    #: NVML's total energy counter: millijoules since the driver was loaded (Volta and newer).
    energy_millijoules: int | None = None

    @property
    def memory_used_ratio(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return self.memory_used_bytes / self.memory_total_bytes


class GpuSnapshot(BaseModel):
    """All GPUs of the host; ``present`` is False when NVML is absent or sees no GPU."""

    model_config = ConfigDict(frozen=True)

    present: bool
    driver_version: str | None = None
    gpus: list[GpuStats] = []
    #: Why there is no GPU data (no library, no driver, NVML error), for logs and status.
    reason: str | None = None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _load_nvml(module_name: str) -> ModuleType | None:
    try:
        return importlib.import_module(module_name)
    except ImportError:
        return None


def read_gpus(module_name: str = "pynvml") -> GpuSnapshot:
    """Read every GPU once. Never raises for a missing library, driver or GPU."""
    nvml = _load_nvml(module_name)
    if nvml is None:
        return GpuSnapshot(present=False, reason="nvidia-ml-py (pynvml) is not installed")
    nvml_error: type[BaseException] = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except nvml_error as exc:
        return GpuSnapshot(present=False, reason=f"NVML unavailable: {exc}")
    except OSError as exc:  # a broken library load outside NVMLError
        return GpuSnapshot(present=False, reason=f"NVML unavailable: {exc}")
    try:
        return _read_initialised(nvml, nvml_error)
    finally:
        with contextlib.suppress(nvml_error):
            nvml.nvmlShutdown()


def _read_initialised(nvml: ModuleType, nvml_error: type[BaseException]) -> GpuSnapshot:
    def optional(call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except nvml_error:
            return None

    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml_error as exc:
        return GpuSnapshot(present=False, reason=f"NVML device count failed: {exc}")
    driver = optional(nvml.nvmlSystemGetDriverVersion)
    gpus: list[GpuStats] = []
    for index in range(count):
        handle = optional(nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            continue
        name = optional(nvml.nvmlDeviceGetName, handle)
        uuid = optional(nvml.nvmlDeviceGetUUID, handle)
        utilization = optional(nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = optional(nvml.nvmlDeviceGetMemoryInfo, handle)
        temperature = optional(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        power_mw = optional(nvml.nvmlDeviceGetPowerUsage, handle)
        limit_mw = optional(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        energy_mj = optional(nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        gpus.append(
            GpuStats(
                index=index,
                name="unknown" if name is None else _text(name),
                uuid="" if uuid is None else _text(uuid),
                utilization_percent=None if utilization is None else float(utilization.gpu),
                memory_utilization_percent=(
                    None if utilization is None else float(utilization.memory)
                ),
                memory_used_bytes=None if memory is None else int(memory.used),
                memory_total_bytes=None if memory is None else int(memory.total),
                temperature_celsius=None if temperature is None else float(temperature),
                power_draw_watts=None if power_mw is None else power_mw / 1000.0,
                power_limit_watts=None if limit_mw is None else limit_mw / 1000.0,
                energy_millijoules=None if energy_mj is None else int(energy_mj),
            )
        )
    driver_version = None if driver is None else _text(driver)
    if not gpus:
        return GpuSnapshot(present=False, driver_version=driver_version, reason="NVML sees no GPU")
    return GpuSnapshot(present=True, driver_version=driver_version, gpus=gpus)
