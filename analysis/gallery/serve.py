"""The gallery served on 127.0.0.1 (`gallery --serve`): the same static site, the run's images
under `/run/images/`, and selections saved to `<run>/selection.json`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from animagine_batch.rundir import selection
from animagine_batch.rundir import ResultsError
from ..webserver import file_reply, json_reply


class GalleryApp:
    def __init__(self, run_dir: Path, site: Path, run_ids: set[str]):
        self.run_dir, self.site, self.ids = Path(run_dir), Path(site), run_ids
        self.lock = threading.Lock()

    def get(self, path: str, query: dict):
        if path == "/api/selection":
            saved = self.run_dir / selection.FILE
            return json_reply(200, json.loads(saved.read_text()) if saved.is_file() else {})
        if path.startswith("/run/images/"):
            return file_reply(self.run_dir / "images", path[len("/run/images/"):])
        return file_reply(self.site, "index.html" if path == "/" else path)

    def post(self, path: str, body):
        if path != "/api/selection":
            return 404, {"error": f"no such endpoint: {path}"}
        try:
            with self.lock:
                saved = selection.write(self.run_dir, body, self.ids)
        except ResultsError as e:
            return 400, {"saved": False, "error": str(e)}
        return 200, {"saved": True, "path": str(saved)}
