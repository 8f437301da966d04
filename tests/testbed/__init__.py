"""Real-Asterisk test bed: Asterisk 22 in a Debian sid chroot, driven by sipp.

Public API::

    from tests.testbed import Testbed, TestbedConfig, QueueSettings
    tb = Testbed()
    tb.up()                      # builds the chroot on first use
    tb.cli("core show channels")
    tb.down()

CLI: ``python -m tests.testbed ensure|up|down|status|cli "<command>"``.
"""

from tests.testbed.ami import AmiClient, AmiError
from tests.testbed.chroot import TestbedError
from tests.testbed.config import QueueSettings, TestbedConfig, default_queues
from tests.testbed.testbed import Testbed

__all__ = [
    "AmiClient",
    "AmiError",
    "QueueSettings",
    "Testbed",
    "TestbedConfig",
    "TestbedError",
    "default_queues",
]
