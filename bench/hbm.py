"""Peak HBM bandwidth of the GPUs the benchmarks know, from the vendors' data sheets.

    from hbm import peak_tbs
    peak_tbs("NVIDIA H100 80GB HBM3")   # 3.35 (TB/s, 10^12 bytes per second)

The benchmarks divide bytes moved by it: bench/moe.py for the share of peak its kernels reach,
bench/engine_gpu.py for the floor of a denoising step (every weight read once). Both take
--peak-tbs for a device that is not listed.
"""
from __future__ import annotations

import re

# (name as torch.cuda.get_device_name() spells it, TB/s); the first that matches a whole word wins,
# so the PCIe and NVL parts come before the SXM one of the same name.
PEAK_TBS = [
    ("H200", 4.8),
    ("H100 NVL", 3.9),
    ("H100 PCIe", 2.0),
    ("H100", 3.35),                 # SXM5, "NVIDIA H100 80GB HBM3"
    ("A100-SXM4-80GB", 2.039),
    ("A100 80GB PCIe", 1.935),
    ("A100-SXM4-40GB", 1.555),
    ("A100-PCIE-40GB", 1.555),
]


def peak_tbs(device_name: str) -> float | None:
    """The device's peak HBM bandwidth in TB/s, or None for a device not in the table."""
    name = device_name.replace("_", " ")
    for key, tbs in PEAK_TBS:
        if re.search(rf"(^|\s){re.escape(key)}(\s|$)", name):
            return tbs
    return None
