"""Test-only backends: a real energy VAD that takes a configurable time per item (to kill a run mid-stage)."""

from __future__ import annotations

import time

from mikupal.vad.energy import EnergyVad


class SlowEnergyVad(EnergyVad):
    def __init__(self, delay: float = 0.3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delay = delay

    def detect(self, audio, sampling_rate):
        time.sleep(self.delay)
        return super().detect(audio, sampling_rate)
