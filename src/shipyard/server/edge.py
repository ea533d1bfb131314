"""/edge/NAME/: the web export's page (edge/web.py) of the version a model serves by default, for a
quick look in a browser. A page is built on its first request, off the event loop, into a cache under
the server's home: a folder per page (edge.web.page_id: the artifact's sha256, then a digest of the
rest), written whole under a temporary name and renamed, so processes that share the home (--workers)
never see half a page. No browser check runs here (`shipyard export --target web` runs one).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from shipyard.edge import web
from shipyard.errors import NotFound
from shipyard.registry import VersionRecord
from shipyard.registry.tempfiles import prefix
from shipyard.runtime.manager import ModelManager

log = logging.getLogger(__name__)


class EdgePages:
    def __init__(self, manager: ModelManager, folder: Path) -> None:
        """`folder`: where built pages are kept (made on first use)."""
        self._manager = manager
        self._folder = folder
        self._built: dict[tuple[str, int, str], Path] = {}
        self._building: dict[tuple[str, int, str], asyncio.Lock] = {}

    async def file(self, name: str, file: str) -> Path:
        """The path of `file` in the page of `name`'s default version, built first if it is not yet:
        NotFound for a model not served or a file no page holds, Unavailable when onnxruntime-web's
        files are missing (edge.web.runtime_folder says how to get them)."""
        served = self._manager.served(name)
        record = served.records[served.default]
        if file not in web.FILES:
            raise NotFound(f"the page of {name} holds no file {file!r}")
        key = (record.model, record.number, record.sha256)
        folder = self._built.get(key)
        if folder is None:
            async with self._building.setdefault(key, asyncio.Lock()):  # one build at a time per version
                folder = self._built.get(key)
                if folder is None:
                    folder = await asyncio.to_thread(self._build, record)
                    self._built[key] = folder
        return folder / file

    def _build(self, record: VersionRecord) -> Path:
        """Blocking: the page's folder, built unless an earlier build (of any process) left it there."""
        folder = self._folder / web.page_id(record)
        if folder.is_dir():
            return folder
        self._folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=prefix(), dir=self._folder))
        try:
            web.build_page(self._manager.registry.artifact(record), record, staging)
            try:
                staging.rename(folder)
            except OSError:  # another process renamed its own build there first: the same page
                if not folder.is_dir():
                    raise
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("built the web page of %s in %s", record.ref, folder)
        return folder
