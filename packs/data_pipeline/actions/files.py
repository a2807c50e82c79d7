"""File helpers for the data_pipeline pack: pure Python, no external system."""

from pathlib import Path


def run(**params):
    if "paths" in params:
        counts = []
        for path in params["paths"]:
            lines = Path(path).read_text().splitlines()
            counts.append({"file": Path(path).name, "rows": max(len(lines) - 1, 0)})
        return counts
    directory = Path(params["directory"])
    if not directory.is_dir():
        raise FileNotFoundError(f"no such directory: {directory}")
    return sorted(str(p) for p in directory.glob(params.get("pattern", "*.csv")))
