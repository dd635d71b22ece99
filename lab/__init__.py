"""The device-private memory lab: a QEMU guest with CONFIG_DEVICE_PRIVATE and test_hmm.

Builds a kernel from Debian's ``linux-source-<series>`` package with the config
fragment ``hmm-lab.config``, builds ``test_hmm.ko`` out of tree and ``hmm-tests``
from the same source, makes a debootstrap rootfs with BCC and chargetrace in it,
boots the kernel under QEMU (TCG by default) and runs ``hmm-tests`` in the guest,
optionally under ``chargetrace record``. Built artifacts are cached outside the
repository, keyed by (source package version, config fragment hash).

Limits: x86_64 hosts only, Debian hosts (apt/dpkg), root required (debootstrap,
chroot). The measured recipe and why each choice was made: ``docs/lab.md``.
"""

from .config import LabConfig
from .run import LabResult, build_all, clean_cache, run_lab

__all__ = ["LabConfig", "LabResult", "build_all", "clean_cache", "run_lab"]
