"""An Airflow notifier for the inquiry tests: appends what it was called with to a file."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseNotifier


class FileNotifier(BaseNotifier):
    template_fields = ()

    def __init__(self, path: str, note: str) -> None:
        super().__init__()
        self.path, self.note = path, note

    def notify(self, context: Any) -> None:
        ti = context["ti"]
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"note": self.note, "task_id": ti.task_id, "dag_id": ti.dag_id}) + "\n")
