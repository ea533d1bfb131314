"""The scheduler: each schedule's `batch run` started as its own process at the times cron names.

A schedule is due when the first time its cron names after its last firing (or its creation) has
come. A scheduler that was not running for a while fires a due schedule once, for the latest of the
times it missed, not once per missed time. Before it starts a firing's job it moves the schedule's
last firing on in the registry (a compare-and-set: of two schedulers on one registry, one fires it).

Each job is a process of its own, `python -m shipyard batch run ARGS --schedule NAME`, run in the
folder the schedule was added in, with the scheduler's registry (SHIPYARD_HOME,
SHIPYARD_DATABASE_URL), its output in a log under SHIPYARD_HOME/jobs/. So a job that crashes takes
only itself down; the reference in ARGS is resolved by each job (digits:production follows deploys);
and the job records itself (batch/history.py). {date} (2026-03-04), {time} (0200) and {datetime}
(2026-03-04T0200) in ARGS stand for the firing's time, so `--output scored/{date}` gives each day a
folder of its own: with one folder, a daily job would find yesterday's finished output and stop there.

One job at a time per schedule: a firing whose schedule's last job is still running is skipped, and
recorded as a skipped job saying which job it waited for.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType

from shipyard.config import Settings
from shipyard.cron import last_fire, next_fire
from shipyard.errors import InvalidInput
from shipyard.registry import JobRecord, Registry, ScheduleRecord, parse_ref

PLACEHOLDERS = {"{date}": "%Y-%m-%d", "{time}": "%H%M", "{datetime}": "%Y-%m-%dT%H%M"}
"""What stands for the firing's time (local) in a schedule's arguments, as strftime formats."""
_WORD = re.compile(r"\{[A-Za-z_]\w*\}")  # a glob's {a,b} is no placeholder


def check_placeholders(args: Sequence[str]) -> None:
    """InvalidInput for a {word} in `args` that is none of the placeholders (a typo: {dat})."""
    for arg in args:
        for found in _WORD.findall(arg):
            if found not in PLACEHOLDERS:
                raise InvalidInput(
                    f"unknown placeholder {found} in {arg!r}: {', '.join(PLACEHOLDERS)} stand for the "
                    "firing's date and time"
                )


def expand(args: Sequence[str], fire: datetime) -> list[str]:
    """`args` with the placeholders replaced by the firing's local date and time."""
    local = fire.astimezone()
    out = []
    for arg in args:
        for placeholder, form in PLACEHOLDERS.items():
            arg = arg.replace(placeholder, local.strftime(form))
        out.append(arg)
    return out


def next_run(schedule: ScheduleRecord) -> datetime:
    """When the schedule fires next (in the past when it is due and no scheduler has fired it)."""
    return next_fire(schedule.cron, schedule.fired_at or schedule.created_at)


def due(schedule: ScheduleRecord, now: datetime) -> datetime | None:
    """The firing the schedule is due for at `now`: the latest time its cron names, once the first
    after its last firing has come; None when not due."""
    if next_run(schedule) > now:
        return None
    return last_fire(schedule.cron, now)


@dataclass(frozen=True)
class Started:
    schedule: str
    fire: datetime
    ref: str
    pid: int
    log: Path

    def line(self) -> str:
        at = _at(self.fire)
        return f"{self.schedule}: started the {at} job of {self.ref} (pid {self.pid}, log {self.log})"


@dataclass(frozen=True)
class NotStarted:
    """A firing whose job did not start: skipped (the last one still running) or failed to start."""

    schedule: str
    fire: datetime
    job: JobRecord

    def line(self) -> str:
        return f"{self.schedule}: job {self.job.id} {self.job.outcome}: {self.job.message}"


@dataclass(frozen=True)
class Finished:
    schedule: str
    fire: datetime
    returncode: int
    job: JobRecord

    def line(self) -> str:
        job = self.job
        if job.outcome != "succeeded":
            return f"{self.schedule}: job {job.id} {job.outcome}: {job.message}"
        took = f" in {job.seconds:.1f} s" if job.seconds is not None else ""
        return (
            f"{self.schedule}: job {job.id} succeeded: {job.model}:{job.version}, {job.rows or 0:,} rows, "
            f"{job.errors or 0:,} errors{took}, in {job.output}"
        )


@dataclass(frozen=True)
class _Child:
    schedule: str
    fire: datetime
    ref: str
    process: subprocess.Popen[bytes]
    log: Path


def _local_now() -> datetime:
    return datetime.now().astimezone()


class Scheduler:
    """Fires the registry's schedules: `tick(now)` starts the due ones' jobs, `reap()` reports those
    that ended, `run_forever()` does both until told to stop."""

    def __init__(
        self, registry: Registry, settings: Settings, clock: Callable[[], datetime] = _local_now
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self._children: list[_Child] = []

    @property
    def running(self) -> int:
        """Jobs started here that have not been reaped yet."""
        return len(self._children)

    def tick(self, now: datetime | None = None) -> list[Started | NotStarted]:
        """Start the job of every schedule due at `now` (the clock's time when None)."""
        now = now or self.clock()
        self.registry.mark_lost()
        fired: list[Started | NotStarted] = []
        for schedule in self.registry.schedules():
            fire = due(schedule, now)
            if fire is not None and self.registry.fire_schedule(schedule.name, fire, schedule.fired_at):
                fired.append(self._fire(schedule, fire))
        return fired

    def reap(self) -> list[Finished]:
        """The jobs started here that have ended since, with how each went."""
        ended = []
        for child in list(self._children):
            code = child.process.poll()
            if code is not None:
                self._children.remove(child)
                ended.append(Finished(child.schedule, child.fire, code, self._job_of(child, code)))
        return ended

    def wait(self, timeout: float | None = None) -> list[Finished]:
        """Wait for every job started here to end (subprocess.TimeoutExpired past `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for child in self._children:
            child.process.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.reap()

    def next_due(self) -> datetime | None:
        """The earliest time a schedule fires next; None without schedules."""
        return min((next_run(s) for s in self.registry.schedules()), default=None)

    def run_forever(self, say: Callable[[str], None] = print, max_wait_s: float = 30.0) -> None:
        """Say how many schedules there are; then tick, report, and wait until the next firing, a
        job's end or a signal (at most `max_wait_s`), until SIGINT or SIGTERM. Then start no new job
        and wait for the running ones, which were started in sessions of their own so that a Ctrl-C at
        the terminal reaches only the scheduler; a second SIGINT or SIGTERM passes a SIGINT on to them
        (each records itself failed, "interrupted"; its committed parts stay, and a rerun with the
        same arguments goes on). Call it from the main thread (it sets signal handlers, and puts the
        old ones back)."""
        wake: queue.SimpleQueue[int] = queue.SimpleQueue()  # put() may be called from a handler
        stops = 0

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stops
            stops += 1
            wake.put(signum)

        def child_ended(signum: int, frame: FrameType | None) -> None:
            wake.put(signum)

        handlers = {signal.SIGINT: stop, signal.SIGTERM: stop, signal.SIGCHLD: child_ended}
        previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
        try:
            say(self._opening())
            while not stops:
                try:
                    for event in [*self.reap(), *self.tick()]:
                        say(event.line())
                except Exception as exc:  # a database away for a while: said, and tried at the next tick
                    say(f"scheduler: tick failed: {type(exc).__name__}: {exc}")
                _wait(wake, self._wait_s(max_wait_s))
            if self._children:
                jobs = _count(self.running, "running job")
                say(f"scheduler: stopping; waiting for {jobs} (signal again: stop them)")
            interrupted = False
            while self._children:
                if stops > 1 and not interrupted:
                    for child in self._children:
                        if child.process.poll() is None:
                            child.process.send_signal(signal.SIGINT)
                    interrupted = True
                for finished in self.reap():
                    say(finished.line())
                if self._children:
                    _wait(wake, max_wait_s)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _fire(self, schedule: ScheduleRecord, fire: datetime) -> Started | NotStarted:
        model = parse_ref(schedule.ref)[0]
        busy = self._busy(schedule.name, fire)
        if busy:
            job = self.registry.job_not_started(schedule.ref, model, "skipped", busy, schedule=schedule.name)
            return NotStarted(schedule.name, fire, job)
        args = expand(schedule.args, fire)
        command = [sys.executable, "-m", "shipyard", "batch", "run", *args, "--schedule", schedule.name]
        log = self.settings.home_dir / "jobs" / f"{schedule.name}-{fire.astimezone():%Y%m%dT%H%M}.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as out:
                process = subprocess.Popen(
                    command,
                    cwd=schedule.folder,
                    env=self._environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C at the scheduler's terminal is the scheduler's
                )
        except OSError as exc:  # its folder removed since, say
            why = f"the {_at(fire)} job could not start: {exc}"
            job = self.registry.job_not_started(schedule.ref, model, "failed", why, schedule=schedule.name)
            return NotStarted(schedule.name, fire, job)
        self._children.append(_Child(schedule.name, fire, schedule.ref, process, log))
        return Started(schedule.name, fire, schedule.ref, process.pid, log)

    def _busy(self, schedule: str, fire: datetime) -> str:
        """Why the firing at `fire` must be skipped ("" when it need not): a job still running."""
        running = self.registry.running_job(schedule)
        if running is not None:
            return (
                f"the {_at(fire)} firing was skipped: job {running.id} (started {_at(running.started_at)}) "
                "is still running"
            )
        child = next((c for c in self._children if c.schedule == schedule and c.process.poll() is None), None)
        if child is not None:  # started, and not yet recorded
            return f"the {_at(fire)} firing was skipped: the {_at(child.fire)} job is still running"
        return ""

    def _job_of(self, child: _Child, code: int) -> JobRecord:
        """The record of an ended child's job; a failed one made here when it never recorded one."""
        self.registry.mark_lost()  # killed before it could say how it went: its row says lost
        host = socket.gethostname()
        for job in self.registry.jobs(child.schedule, limit=20):
            if job.pid == child.process.pid and job.host == host:
                return job
        ended = f"was killed ({signal.Signals(-code).name})" if code < 0 else f"exited with {code}"
        why = f"its process {ended} before the job started: {_last_line(child.log)}"
        model = parse_ref(child.ref)[0]
        return self.registry.job_not_started(child.ref, model, "failed", why, schedule=child.schedule)

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "SHIPYARD_HOME": str(self.settings.home_dir),
            "SHIPYARD_DATABASE_URL": self.registry.url,
        }

    def _opening(self) -> str:
        count, upcoming = len(self.registry.schedules()), self.next_due()
        if upcoming is None:
            return "scheduler: no schedules yet (shipyard batch schedule add NAME ...); Ctrl-C stops"
        return f"scheduler: {_count(count, 'schedule')}, the next at {_at(upcoming)}; Ctrl-C stops"

    def _wait_s(self, most: float) -> float:
        try:
            upcoming = self.next_due()
        except Exception:  # said by the next tick
            return most
        if upcoming is None:
            return most
        return min(most, max(0.5, (upcoming - self.clock()).total_seconds()))


def _wait(wake: queue.SimpleQueue[int], seconds: float) -> None:
    """Wait `seconds`, or less when woken (a signal); then take every wake-up there is."""
    try:
        wake.get(timeout=seconds)
        while True:
            wake.get_nowait()
    except queue.Empty:
        pass


def _last_line(log: Path) -> str:
    """The log's last line: the message of `error: ...`, or of a usage error's box, on one line."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    if not lines:
        return "(nothing in its log)"
    if not lines[-1].startswith("╰"):
        return lines[-1]
    top = max((i for i, line in enumerate(lines) if line.startswith("╭")), default=0)
    return " ".join(line.strip("│ ") for line in lines[top + 1 : -1]).strip()


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _at(moment: datetime) -> str:
    return f"{moment.astimezone():%Y-%m-%d %H:%M}"
