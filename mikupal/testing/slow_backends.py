"""Test-only backends: a real energy VAD that takes a configurable time per item (to kill a run mid-stage), a
passthrough separator that counts its setups, and an extractor that waits for another rank's progress."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mikupal.extract.pyav import PyAvExtractor
from mikupal.separate.passthrough import PassthroughSeparator
from mikupal.vad.energy import EnergyVad


class SlowEnergyVad(EnergyVad):
    """:class:`EnergyVad` that sleeps ``delay`` s per item. With ``pid_dir`` it writes ``<pid>-<ns>.pid`` there at each setup
    and keeps ``<pid>.busy`` there while it works on an item (so a test can kill a worker in the middle of an item)."""

    def __init__(self, delay: float = 0.3, pid_dir: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delay = delay
        self.pid_dir = pid_dir

    def setup(self) -> None:
        super().setup()
        if self.pid_dir:
            Path(self.pid_dir).mkdir(parents=True, exist_ok=True)
            (Path(self.pid_dir) / f"{os.getpid()}-{time.time_ns()}.pid").write_text("")

    def detect(self, audio, sampling_rate):
        busy = Path(self.pid_dir) / f"{os.getpid()}.busy" if self.pid_dir else None
        if busy is not None:
            busy.write_text("")
        time.sleep(self.delay)
        result = super().detect(audio, sampling_rate)
        if busy is not None:
            busy.unlink()
        return result


class StoppingEnergyVad(EnergyVad):
    """:class:`EnergyVad` that stops its stage (as a spent budget does) after ``stop_after`` items."""

    def __init__(self, stop_after: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stop_after = stop_after
        self.seen = 0

    def detect(self, audio, sampling_rate):
        from mikupal.stage import StopStage

        if self.seen >= self.stop_after:
            raise StopStage(f"test stop after {self.stop_after} item(s)")
        self.seen += 1
        return super().detect(audio, sampling_rate)


class CountingPassthrough(PassthroughSeparator):
    """The passthrough separator, writing ``<pid>-<ns>.setup`` into ``setup_dir`` at each setup and
    ``<pid>-<ns>.teardown`` at each teardown (so a test can count model loads per worker process)."""

    def __init__(self, setup_dir: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.setup_dir = Path(setup_dir)

    def setup(self) -> None:
        self.setup_dir.mkdir(parents=True, exist_ok=True)
        (self.setup_dir / f"{os.getpid()}-{time.time_ns()}.setup").write_text("")

    def teardown(self) -> None:
        (self.setup_dir / f"{os.getpid()}-{time.time_ns()}.teardown").write_text("")


class GatedExtractor(PyAvExtractor):
    """:class:`PyAvExtractor` that, for the file named ``gate_file``, waits until ``done_glob`` matches a non-empty
    file (e.g. another rank's done log of a later stage), at most ``timeout`` s (then the item fails)."""

    def __init__(self, gate_file: str, done_glob: str, timeout: float = 120.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gate_file, self.done_glob, self.timeout = gate_file, done_glob, timeout

    def extract(self, path, sampling_rate):
        if Path(path).name == self.gate_file:
            import glob

            deadline = time.time() + self.timeout
            while not any(Path(p).stat().st_size for p in glob.glob(self.done_glob)):
                if time.time() > deadline:
                    raise RuntimeError(f"gate: nothing matched {self.done_glob} within {self.timeout} s")
                time.sleep(0.05)
        return super().extract(path, sampling_rate)


class SlowSetupVad(EnergyVad):
    """:class:`EnergyVad` whose setup takes ``setup_delay`` s, as a backend loading a model does."""

    def __init__(self, setup_delay: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.setup_delay = setup_delay

    def setup(self) -> None:
        time.sleep(self.setup_delay)
        super().setup()


class FailingSetupVad(EnergyVad):
    """:class:`EnergyVad` whose setup raises (after ``delay`` s), as a backend with a broken model file would."""

    def __init__(self, delay: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delay = delay

    def setup(self) -> None:
        time.sleep(self.delay)
        raise RuntimeError("test: the VAD model failed to load")
