"""The kernelspec manager of a trainee's JupyterLab (named in its configuration by
:mod:`dnslab.jupyter`; a module of its own so that dnslab's commands need not import Jupyter)."""
from __future__ import annotations

import os

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_data_dir
from traitlets import default


class ConfinedKernelSpecManager(KernelSpecManager):
    """Kernelspecs only from ``$JUPYTER_DATA_DIR/kernels`` (root-owned), no native kernel,
    and ``allowed_kernelspecs`` enforced on lookup, not only on listing."""

    @default("kernel_dirs")
    def _kernel_dirs_default(self) -> list[str]:
        return [os.path.join(jupyter_data_dir(), "kernels")]

    @default("ensure_native_kernel")
    def _ensure_native_kernel_default(self) -> bool:
        return False

    def get_kernel_spec(self, kernel_name: str):
        if self.allowed_kernelspecs and kernel_name not in self.allowed_kernelspecs:
            raise NoSuchKernel(kernel_name)
        return super().get_kernel_spec(kernel_name)
