"""Faust's partition assignor, remembering a worker's last assignment across its restarts.

Faust's assignor is sticky: the group leader gives each member back the partitions it
reports holding. A restarted process reports none, so a fleet restarted together is
assigned afresh, and a worker may get partitions whose local copy is from whenever it last
held them: the soak's restart from local state then restored 600,000-700,000 records per
worker. Kafka Streams' assignor prefers the instance whose local state is closest for the
same reason. `RememberingAssignor` saves the assignment a worker holds when it stops, beside
its RocksDB, and claims it when the process starts again, also while members joining one
after another pass everything to whoever joined first for a moment, until another member
takes part of it. A worker whose local state was deleted has lost the file with it and
claims nothing; one killed claims what it held at its last stop, and the group leader
settles a claim another member makes too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from faust.assignor import PartitionAssignor
from faust.assignor.client_assignment import ClientAssignment, ClientMetadata
from faust.types import AppT

log = logging.getLogger(__name__)

FILE_NAME = "last-assignment.json"


class RememberingAssignor(PartitionAssignor):
    """Faust's assignor, claiming the assignment saved by this worker's last process."""

    def __init__(self, app: AppT, replicas: int = 0) -> None:
        super().__init__(app, replicas)
        self._saved = Path(app.conf.appdir) / FILE_NAME
        self._remembered = load_assignment(self._saved)
        if self._remembered is not None:
            self._assignment = self._remembered

    @property
    def _metadata(self) -> ClientMetadata:
        metadata = super()._metadata
        self._remembered = still_claimed(self._remembered, self._assignment)
        if self._remembered is None:
            return metadata
        claimed: ClientMetadata = metadata.derive(assignment=self._remembered)
        return claimed

    def remember(self) -> None:
        """Save the assignment held now, for this worker's next process to claim."""
        save_assignment(self._saved, self._assignment)


def still_claimed(remembered: ClientAssignment | None, held: ClientAssignment) -> ClientAssignment | None:
    """What a worker claims from its last process: all of it while what it holds covers it
    (the first member to join holds everything for a moment), nothing once another member
    took part of it (the group has changed since)."""
    if remembered is None or not remembered.active_tps <= held.active_tps:
        return None
    return remembered


def load_assignment(path: Path) -> ClientAssignment | None:
    """The assignment saved at `path`, if there is a readable one."""
    try:
        loaded: ClientAssignment = ClientAssignment.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception:  # a torn or foreign file costs stickiness, not the start
        log.warning("ignoring the saved partition assignment %s: it cannot be read", path, exc_info=True)
        return None
    return loaded


def save_assignment(path: Path, assignment: ClientAssignment) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(assignment.dumps())
    os.replace(partial, path)
