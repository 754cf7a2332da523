"""PsutilProbe's free CPU: a figure over a window long enough to mean something, whoever asks."""

from __future__ import annotations

from typing import NamedTuple

from edgecrew.models.probe import PsutilProbe


class Times(NamedTuple):
    """psutil.cpu_times()'s fields that count (seconds, summed over the cores)."""

    user: float
    system: float
    idle: float
    iowait: float = 0.0


class Machine:
    """Two cores whose busy and idle seconds a test advances by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.times = Times(0.0, 0.0, 0.0)
        self.own = 0.0  # CPU seconds of edgecrew's own process (its model calls)

    def run(self, seconds: float, busy: float, own: float = 0.0) -> None:
        """``seconds`` pass with ``busy`` of the two cores' time spent working, ``own`` of it edgecrew's."""
        total = 2 * seconds
        self.now += seconds
        self.own += total * own
        self.times = Times(self.times.user + total * busy, self.times.system, self.times.idle + total * (1 - busy))

    def probe(self) -> PsutilProbe:
        return PsutilProbe(cpu_times=lambda: self.times, clock=lambda: self.now, cpu_count=lambda: 2,
                           own_cpu_time=lambda: self.own)  # fmt: skip


def test_two_questions_a_moment_apart_get_the_same_free_cpu() -> None:
    # EdgePilot asks scheduler.can_run and then scheduler.suggest_window within milliseconds: the
    # second asked over a few ms, in which the asking process itself was busy, and said 0.0 cores free
    # right after the first had said 2.0 (one answer, two contradicting figures).
    machine = Machine()
    probe = machine.probe()
    machine.run(5.0, busy=0.25)
    first = probe.free_cpu()
    machine.run(0.005, busy=1.0)
    second = probe.free_cpu()
    assert first == second == 1.5


def test_free_cpu_follows_the_machine_over_each_full_window() -> None:
    machine = Machine()
    probe = machine.probe()
    machine.run(2.0, busy=0.5)
    assert probe.free_cpu() == 1.0
    machine.run(3.0, busy=0.0)
    assert probe.free_cpu() == 2.0


def test_edgecrews_own_model_calls_leave_the_cpu_free_for_a_job() -> None:
    # EdgePilot asks can_run right after its planner's model call: the llama.cpp threads of edgecrew's
    # own process had kept both cores busy, and a job "did not fit now" on an idle box.
    machine = Machine()
    probe = machine.probe()
    machine.run(4.0, busy=0.95, own=0.9)
    assert probe.free_cpu() == 1.9
    machine.run(2.0, busy=0.75, own=0.25)  # another program keeps one core busy meanwhile
    assert probe.free_cpu() == 1.0


def test_the_first_question_right_after_start_reads_the_load_average() -> None:
    # No full window yet: a few ms of CPU time say nothing, the load average does.
    machine = Machine()
    probe = PsutilProbe(cpu_times=lambda: machine.times, clock=lambda: machine.now, cpu_count=lambda: 2,
                        load_average=lambda: 0.5, own_cpu_time=lambda: machine.own)  # fmt: skip
    machine.run(0.01, busy=1.0)
    assert probe.free_cpu() == 1.5


def test_the_real_probe_answers_within_the_machine() -> None:
    probe = PsutilProbe()
    import psutil

    cores = psutil.cpu_count() or 1
    assert 0.0 <= probe.free_cpu() <= cores
