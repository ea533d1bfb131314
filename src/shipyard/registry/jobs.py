"""Batch jobs in the registry: the schedules that fire them, and the record of every job run.

A schedule is a `batch run`'s arguments and a cron expression (batch/schedule.py fires it); a job is
one run, by hand or of a schedule, from its start to how it ended. Neither changes a model, so
neither writes to the models' history: the jobs table is their own. Each change is one transaction.

A job's row names the process running it (pid and host). A process killed -9 never says how its job
ended, so a running job whose process is gone from this host is read as lost, and `mark_lost` (called
at each scheduler tick) writes that down. A pid that the system has given to another process since
keeps its job running until that process ends too; a job on another host is judged there.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shipyard.cron import check_cron
from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.names import check_name
from shipyard.registry.base import RegistryBase
from shipyard.registry.records import JobRecord, ScheduleRecord
from shipyard.registry.tables import BatchJobRow, ScheduleRow, utcnow

RUNNING = "running"
ENDED = ("succeeded", "failed")
"""How a job that ran ends."""
NOT_STARTED = ("skipped", "failed")
"""How a job that never ran is recorded: a firing skipped, or a reference that resolved to nothing."""
LOST = "lost"


class JobsMixin(RegistryBase):
    # -- schedules ------------------------------------------------------------------------------

    def add_schedule(
        self, name: str, cron: str, args: Sequence[str], *, folder: Path | str | None = None
    ) -> ScheduleRecord:
        """A new schedule firing `batch run ARGS` at the times `cron` names, relative paths in ARGS
        read from `folder`. Conflict when one of that name exists."""
        check_name(name, "schedule name")
        row = ScheduleRow(
            name=name,
            cron=check_cron(cron),
            args=_checked_args(args),
            folder=None if folder is None else str(folder),
            actor=self.actor,
            created_at=utcnow(),
            fired_at=None,
        )
        taken = f"a schedule named {name!r} exists: remove it first, or pick another name"
        try:
            with self._writing() as session:
                if session.get(ScheduleRow, name) is not None:
                    raise Conflict(taken)
                session.add(row)
        except IntegrityError:  # another writer added the same name first (PostgreSQL)
            raise Conflict(taken) from None
        return schedule_record(row)

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        with self._session() as session:
            rows = session.scalars(select(ScheduleRow).order_by(ScheduleRow.name))
            return [schedule_record(row) for row in rows]

    def schedule(self, name: str) -> ScheduleRecord:
        with self._session() as session:
            return schedule_record(_schedule_row(session.get(ScheduleRow, name), name))

    def remove_schedule(self, name: str) -> ScheduleRecord:
        """Remove a schedule: it fires no more (a job of it that is running goes on; its record stays)."""
        with self._writing() as session:
            row = _schedule_row(session.get(ScheduleRow, name, with_for_update=True), name)
            session.delete(row)
            return schedule_record(row)

    def fire_schedule(self, name: str, at: datetime, last: datetime | None) -> bool:
        """Move the schedule's last firing from `last` (as the caller read it) to `at`. False, moving
        nothing, when it was moved meanwhile (another scheduler fired it) or the schedule removed:
        of two schedulers on one registry, one fires each firing."""
        with self._writing() as session:
            row = session.get(ScheduleRow, name, with_for_update=True)
            if row is None or row.fired_at != last:
                return False
            row.fired_at = at
            return True

    # -- jobs -----------------------------------------------------------------------------------

    def job_started(
        self, ref: str, model: str, version: int, output: Path | str, schedule: str | None = None
    ) -> int:
        """Record that this process started a job of `ref` (standing for `version`); its id."""
        row = self._job_row(ref, model, RUNNING, output=output, schedule=schedule, version=version)
        with self._writing() as session:
            session.add(row)
            session.flush()
            return row.id

    def job_finished(
        self,
        id: int,
        rows: int | None,
        errors: int | None,
        outcome: str,
        message: str = "",
        *,
        version: int | None = None,
    ) -> JobRecord:
        """Record how a job ended: succeeded or failed, with the rows it read and could not (None:
        not known), and the version it ran when that turned out other than the one it started with.
        A job read as lost can still finish (its process was alive after all); one that ended cannot."""
        if outcome not in ENDED:
            raise InvalidInput(f"a job ends {' or '.join(ENDED)}, not {outcome!r}")
        with self._writing() as session:
            row = session.get(BatchJobRow, id, with_for_update=True)
            if row is None:
                raise NotFound(f"no batch job {id}")
            if row.outcome not in (RUNNING, LOST):
                raise Conflict(f"batch job {id} has ended already: {row.outcome}")
            row.rows, row.errors, row.outcome, row.message = rows, errors, outcome, message
            row.ended_at = utcnow()
            if version is not None:
                row.version = version
            return job_record(row)

    def job_not_started(
        self,
        ref: str,
        model: str,
        outcome: str,
        message: str,
        *,
        schedule: str | None = None,
        output: Path | str = "",
    ) -> JobRecord:
        """Record a job that never ran: `skipped` (its schedule's last job was still running) or
        `failed` (its reference stands for no version, its process could not start)."""
        if outcome not in NOT_STARTED:
            raise InvalidInput(f"a job that never ran is {' or '.join(NOT_STARTED)}, not {outcome!r}")
        row = self._job_row(ref, model, outcome, output=output, schedule=schedule, message=message)
        row.ended_at = row.started_at
        with self._writing() as session:
            session.add(row)
            session.flush()
            return job_record(row)

    def jobs(self, schedule: str | None = None, limit: int = 50) -> list[JobRecord]:
        """The latest jobs, newest first: of one schedule, or all."""
        query = select(BatchJobRow).order_by(BatchJobRow.id.desc()).limit(limit)
        if schedule is not None:
            query = query.where(BatchJobRow.schedule == schedule)
        host = socket.gethostname()
        with self._session() as session:
            return [job_record(row, host) for row in session.scalars(query)]

    def job(self, id: int) -> JobRecord:
        with self._session() as session:
            row = session.get(BatchJobRow, id)
            if row is None:
                raise NotFound(f"no batch job {id}")
            return job_record(row, socket.gethostname())

    def running_job(self, schedule: str) -> JobRecord | None:
        """The schedule's newest job that is running (its process alive), if any."""
        query = (
            select(BatchJobRow)
            .where(BatchJobRow.schedule == schedule, BatchJobRow.outcome == RUNNING)
            .order_by(BatchJobRow.id.desc())
        )
        host = socket.gethostname()
        with self._session() as session:
            running = (job_record(row, host) for row in session.scalars(query))
            return next((job for job in running if job.outcome == RUNNING), None)

    def mark_lost(self) -> list[JobRecord]:
        """Write down as lost the running jobs of this host whose process is gone; those jobs."""
        host = socket.gethostname()
        query = select(BatchJobRow).where(BatchJobRow.outcome == RUNNING, BatchJobRow.host == host)
        with self._session() as session:  # most ticks find none: no write transaction for them
            if not any(_lost(row, host) for row in session.scalars(query)):
                return []
        lost = []
        with self._writing() as session:
            for row in session.scalars(query.with_for_update()):
                if _lost(row, host):
                    row.outcome, row.ended_at = LOST, utcnow()
                    row.message = row.message or _lost_message(row)
                    lost.append(job_record(row))
        return lost

    def _job_row(
        self,
        ref: str,
        model: str,
        outcome: str,
        *,
        output: Path | str,
        schedule: str | None,
        version: int | None = None,
        message: str = "",
    ) -> BatchJobRow:
        return BatchJobRow(
            schedule=schedule,
            ref=ref,
            model=model,
            version=version,
            outcome=outcome,
            started_at=utcnow(),
            ended_at=None,
            rows=None,
            errors=None,
            output=str(output),
            message=message,
            pid=os.getpid(),
            host=socket.gethostname(),
            actor=self.actor,
        )


def _checked_args(args: Sequence[str]) -> list[str]:
    """The arguments of `batch run`, the model reference first (a scheduler names the job by it)."""
    args = list(args)
    if not args or not all(isinstance(a, str) for a in args):
        raise InvalidInput(
            "a schedule needs the arguments of `batch run`: NAME[:VERSION] --input ... --output ..."
        )
    name, sep, version = args[0].partition(":")
    if args[0].startswith("-") or (sep and not version):
        raise InvalidInput(
            f"the first argument must be the model reference NAME[:VERSION], not {args[0]!r}: "
            "NAME[:VERSION] --input ... --output ..."
        )
    check_name(name)
    return args


def _schedule_row(row: ScheduleRow | None, name: str) -> ScheduleRow:
    if row is None:
        raise NotFound(f"no schedule named {name!r}")
    return row


def _lost(row: BatchJobRow, host: str) -> bool:
    """Whether a running job's process is gone: known only for this host's processes."""
    return row.outcome == RUNNING and row.host == host and row.pid is not None and not _alive(row.pid)


def _lost_message(row: BatchJobRow) -> str:
    return f"its process ({row.pid} on {row.host}) ended without saying how the job went"


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there: never judged lost
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def schedule_record(row: ScheduleRow) -> ScheduleRecord:
    return ScheduleRecord(
        row.name, row.cron, tuple(row.args), row.folder, row.actor, row.created_at, row.fired_at
    )


def job_record(row: BatchJobRow, host: str | None = None) -> JobRecord:
    """The job as stored; a running one whose process is gone from `host` (this one) read as lost."""
    lost = host is not None and _lost(row, host)
    return JobRecord(
        row.id,
        row.schedule,
        row.ref,
        row.model,
        row.version,
        LOST if lost else row.outcome,
        row.started_at,
        row.ended_at,
        row.rows,
        row.errors,
        row.output,
        _lost_message(row) if lost else row.message,
        row.pid,
        row.host,
        row.actor,
    )
