"""Find the datafiles of a FeatureVisor build on disk and notice when they change.

Every ``*.json`` under the directory (recursively) is a datafile, keyed by its path relative to
the directory with ``/`` separators (``production/datafile-tag-all.json``). Files reached through
a symlink that leaves the directory are ignored, so a link cannot expose the rest of the disk. A
file is re-read only when its size or modification time changed; one that cannot be read, is not
JSON or is not a valid datafile is reported as an issue, and its last good content stays in use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from abpilot.featurevisor.datafile import Datafile, DatafileError, parse_datafile

log = logging.getLogger("abpilot.featurevisor")
MAX_DATAFILE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LoadedDatafile:
    path: str
    content: str
    digest: str
    parsed: Datafile


@dataclass(frozen=True, slots=True)
class LoadIssue:
    path: str
    message: str
    at: datetime


def digest_of(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def read_datafile(path: str, content: str) -> LoadedDatafile:
    """Decode and check one datafile; raise ``DatafileError`` naming the problem."""
    try:
        document = json.loads(content)
    except ValueError as error:
        raise DatafileError(f"not valid JSON: {error}", field="$") from None
    return LoadedDatafile(path, content, digest_of(content), parse_datafile(document))


class DiskRegistry:
    """The datafiles under ``root`` as last seen; ``scan`` returns what changed since."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._seen: dict[str, tuple[int, int]] = {}
        self.issues: dict[str, LoadIssue] = {}

    def paths(self) -> dict[str, Path]:
        """Relative key -> file, for every datafile inside ``root``."""
        found: dict[str, Path] = {}
        if not self.root.is_dir():
            return found
        for folder, _, names in os.walk(self.root, followlinks=False):
            for name in names:
                if not name.endswith(".json"):
                    continue
                file = Path(folder, name)
                real = file.resolve()
                if not real.is_file() or not real.is_relative_to(self.root):
                    continue
                found[file.relative_to(self.root).as_posix()] = real
        return dict(sorted(found.items()))

    def scan(self, now: datetime) -> list[LoadedDatafile]:
        """Datafiles that are new or changed on disk and valid; problems go to ``issues``."""
        changed = []
        for key, file in self.paths().items():
            try:
                stat = file.stat()
            except OSError as error:
                self._issue(key, f"cannot read the file: {error.strerror}", now)
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._seen.get(key) == signature:
                continue
            self._seen[key] = signature
            try:
                if stat.st_size > MAX_DATAFILE_BYTES:
                    raise DatafileError(
                        f"the file is larger than {MAX_DATAFILE_BYTES} bytes", field="$"
                    )
                content = file.read_text(encoding="utf-8")
                loaded = read_datafile(key, content)
            except (OSError, UnicodeDecodeError) as error:
                self._issue(key, f"cannot read the file: {error}", now)
                continue
            except DatafileError as error:
                where = f" at {error.field}" if error.field and error.field != "$" else ""
                self._issue(key, f"{error.message}{where}", now)
                continue
            self.issues.pop(key, None)
            changed.append(loaded)
        return changed

    def _issue(self, key: str, message: str, now: datetime) -> None:
        log.warning("datafile %s was not loaded: %s (the last good one stays in use)", key, message)
        self.issues[key] = LoadIssue(key, message, now)
