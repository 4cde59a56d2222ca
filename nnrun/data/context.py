"""Where a dataset's relative paths are looked up: the data directory, the current folder, and the config's own
folder (and its `data/` subfolder), so that a config and its data can travel together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nnrun.errors import UserError


@dataclass(frozen=True)
class DataContext:
    """What nnrun tells a dataset builder: where relative data paths resolve."""

    data_dir: Path = Path("data")  # --data-dir, else $NNRUN_DATA_DIR, else ./data
    config_dir: Path | None = None  # the folder of the config file the run came from, when there is one

    def candidates(self, path: str) -> list[Path]:
        """Every place a (relative) path may be, in the order they are tried."""
        given = Path(path).expanduser()
        if given.is_absolute():
            return [given]
        places = [Path(self.data_dir) / given, Path.cwd() / given]
        if self.config_dir is not None:
            places += [self.config_dir / given, self.config_dir / "data" / given]
        return list(dict.fromkeys(places))

    def find(self, path: str, *, folder: bool = False) -> Path:
        """The first candidate that exists; else one line listing every place looked, with the fix."""
        candidates = self.candidates(path)
        for candidate in candidates:
            if candidate.is_dir() if folder else candidate.is_file():
                return candidate
        where = ", ".join(f"'{c}'" for c in candidates)
        raise UserError(f"data {'folder' if folder else 'file'} '{path}' not found (looked in {where}; put it in "
                        f"one of those, or pass --data-dir DIR or set NNRUN_DATA_DIR to the folder that holds it)")
