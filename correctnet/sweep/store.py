"""SQLite results store of a sweep: one row per (checkpoint, sigma, tile, settings) point.

Table ``points``:

======================  ==============================================================
``key`` TEXT PK         SHA-256 of the canonical JSON of everything that determines the
                        result (checkpoint file hash, sigma, tile, converters, level,
                        samples, seed, limit); a rerun skips points whose key is present
``checkpoint``          path as given; ``label`` a short name for plots
``sigma``, ``tile``     the grid coordinates
``line_resistance``     ohm per word/bit-line segment (third grid axis; 0: ideal wires)
``clean_accuracy``      digital accuracy (fraction)
``mean``, ``std``       Monte-Carlo accuracy statistics (fractions)
``samples``             number of device samples; ``accuracies`` JSON list of fractions
``config``              JSON of the point's settings + ``XbarConfig.to_dict()``
``hardware``            JSON of ``hardware_report(...).to_dict()`` (with the cost preset's
                        energy / latency / area in ``cost_total``)
``seconds``, ``created`` wall time of the point, UTC ISO time stamp
======================  ==============================================================

A point's key holds ``line_resistance`` and ``cost`` only when they differ from 0 and
:data:`DEFAULT_COST`, so the keys of databases written before those settings existed stay
valid (such a sweep still resumes); their ``points`` table gains the ``line_resistance``
column (``DEFAULT 0``) when opened.

Each point is committed on its own (``INSERT OR IGNORE``), so a sweep killed at any moment
(Ctrl-C or ``kill -9``) keeps every finished point and never stores one twice.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from correctnet.errors import SweepStoreError
from correctnet.fileio import atomic_write

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL,
    label TEXT NOT NULL,
    sigma REAL NOT NULL,
    tile INTEGER NOT NULL,
    clean_accuracy REAL,
    mean REAL NOT NULL,
    std REAL NOT NULL,
    samples INTEGER NOT NULL,
    accuracies TEXT NOT NULL,
    config TEXT NOT NULL,
    hardware TEXT,
    seconds REAL,
    created TEXT NOT NULL,
    line_resistance REAL NOT NULL DEFAULT 0
)
"""

#: Columns added after the first release, with the ALTER TABLE clause that adds each.
_ADDED_COLUMNS: dict[str, str] = {"line_resistance": "line_resistance REAL NOT NULL DEFAULT 0"}

#: Cost preset whose name is left out of point keys (points stored before ``--cost-preset``).
DEFAULT_COST = "isaac-32nm"

#: Columns of the ``points`` table (a foreign table of that name is refused).
_COLUMNS: frozenset[str] = frozenset(
    line.split()[0] for line in _SCHEMA.strip().splitlines()[1:-1]) - set(_ADDED_COLUMNS)

#: Columns exported to CSV (``accuracies``/``config``/``hardware`` stay in the database).
CSV_COLUMNS: tuple[str, ...] = ("label", "checkpoint", "sigma", "tile", "line_resistance",
                                "clean_accuracy", "mean", "std", "samples", "seconds",
                                "cost_preset", "energy_j", "latency_s", "area_mm2", "key")



def point_settings(settings: dict[str, Any], *, line_resistance: float = 0.0,
                   cost: str = DEFAULT_COST) -> dict[str, Any]:
    """``settings`` plus ``line_resistance`` and ``cost`` where they are not the defaults.

    Leaving the defaults out keeps every key of a database written before these settings
    existed: a point with ideal wires and the default preset has the key it always had.

    Args:
        settings: The point's other settings (checkpoint hash, sigma, tile, converters, ...).
        line_resistance: Ohm per wire segment (0: not added).
        cost: Cost preset name (:data:`DEFAULT_COST`: not added).
    """
    out = dict(settings)
    if float(line_resistance) != 0.0:
        out["line_resistance"] = round(float(line_resistance), 10)
    if cost != DEFAULT_COST:
        out["cost"] = cost
    return out


def point_key(settings: dict[str, Any]) -> str:
    """Unique key of a point: SHA-256 of ``json.dumps(settings, sort_keys=True)``."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes (identifies a checkpoint's content)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SweepStore:
    """A sweep database (``DIR/sweep.db``); use as a context manager.

    Args:
        path: SQLite file (created with its parent directory if missing).

    Raises:
        SweepStoreError: The file exists but is not a usable SQLite sweep database.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(str(self.path), timeout=30.0)
            self._con.row_factory = sqlite3.Row
            self._con.execute(_SCHEMA)
            self._con.commit()
            columns = {r[1] for r in self._con.execute("PRAGMA table_info(points)")}
            if _COLUMNS <= columns:
                for name, clause in _ADDED_COLUMNS.items():
                    if name not in columns:          # a database of an older version
                        self._con.execute(f"ALTER TABLE points ADD COLUMN {clause}")
                self._con.commit()
        except sqlite3.DatabaseError as exc:
            raise SweepStoreError(f"{self.path} is not a usable sweep database ({exc}); move "
                                  "it away (or choose another --out) and rerun") from exc
        missing = sorted(_COLUMNS - columns)
        if missing:
            self._con.close()
            raise SweepStoreError(
                f"{self.path} is a database of another kind (its table 'points' lacks "
                f"{', '.join(missing[:4])}); move it away (or choose another --out) and rerun")

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._con.close()

    def has(self, key: str) -> bool:
        """True if a point with this key is stored."""
        return self._con.execute("SELECT 1 FROM points WHERE key = ?", (key,)).fetchone() \
            is not None

    def add(self, key: str, *, checkpoint: str, label: str, sigma: float, tile: int,
            result: dict[str, Any], settings: dict[str, Any],
            line_resistance: float = 0.0) -> bool:
        """Insert one point and commit; an existing key is left unchanged.

        Args:
            key: :func:`point_key` of ``settings``.
            checkpoint: Checkpoint path as given by the user.
            label: Short name of the checkpoint.
            sigma: Variation std of the point.
            tile: Tile side of the point.
            result: :func:`correctnet.sweep.simulate.simulate_model` output.
            settings: What determined the point (stored in ``config`` with the XbarConfig).
            line_resistance: Ohm per wire segment of the point.

        Returns:
            True if a row was inserted.
        """
        config = dict(settings, xbar=result.get("config"))
        cur = self._con.execute(
            "INSERT OR IGNORE INTO points (key, checkpoint, label, sigma, tile, clean_accuracy,"
            " mean, std, samples, accuracies, config, hardware, seconds, created,"
            " line_resistance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, checkpoint, label, float(sigma), int(tile), result.get("clean_accuracy"),
             float(result["mean"]), float(result["std"]), int(result["samples"]),
             json.dumps(result["accuracies"]), json.dumps(config, sort_keys=True),
             json.dumps(result.get("hardware")), result.get("seconds"),
             _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             float(line_resistance)))
        self._con.commit()
        return cur.rowcount == 1

    def rows(self, keys: list[str] | None = None) -> list[dict[str, Any]]:
        """Stored points as dicts (JSON columns decoded), by label, line resistance, sigma, tile.

        Args:
            keys: Only these keys (None: all rows).
        """
        found = [dict(r) for r in self._con.execute(
            "SELECT * FROM points ORDER BY label, line_resistance, sigma, tile, key")]
        if keys is not None:
            wanted = set(keys)
            found = [r for r in found if r["key"] in wanted]
        for row in found:
            for column in ("accuracies", "config", "hardware"):
                row[column] = json.loads(row[column]) if row[column] is not None else None
        return found

    def count(self) -> int:
        """Number of stored points."""
        return int(self._con.execute("SELECT COUNT(*) FROM points").fetchone()[0])


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV line: the row's columns plus the cost per inference from ``hardware``."""
    hardware = row.get("hardware") or {}
    cost = hardware.get("cost_total") or {}
    extra = {"cost_preset": hardware.get("cost"), "energy_j": cost.get("energy_j"),
             "latency_s": cost.get("latency_s"), "area_mm2": cost.get("area_mm2")}
    return {c: extra[c] if c in extra else row.get(c) for c in CSV_COLUMNS}


def export_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write points to CSV (columns :data:`CSV_COLUMNS`, accuracies as fractions).

    ``energy_j``, ``latency_s`` and ``area_mm2`` are per inference (one image), analog +
    digital, under the preset named in ``cost_preset`` (empty for points stored without one).

    Written atomically (:func:`correctnet.fileio.atomic_write` with ``unique=True``: a
    temporary file unique to this call, then :func:`os.replace`), so concurrent writers
    (several processes or threads exporting the same sweep) never share a temporary file and
    readers only ever see a complete CSV. The temporary file is removed if writing fails.
    """
    path = Path(path)
    with atomic_write(path, unique=True) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(_csv_row(row))
    return path
