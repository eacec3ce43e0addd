"""Imported by the fork server of ``supermel batch`` only (its preload list): the fork server dies
with the driver that started it, even when the driver is killed with ``kill -9`` (Linux:
``PR_SET_PDEATHSIG``). The driver sets ``SUPERMEL_BATCH_DRIVER_PID`` before starting it; anywhere
else (the variable unset, or another parent) importing this module does nothing.
"""

from __future__ import annotations

import os

from ._pool import DRIVER_PID_VAR, set_parent_death_signal

__all__: list = []

_driver = os.environ.get(DRIVER_PID_VAR, "")
if _driver.isdigit() and os.getppid() == int(_driver):
    set_parent_death_signal(int(_driver))
