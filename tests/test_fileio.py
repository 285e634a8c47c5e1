"""correctnet.fileio: the one atomic write (every file correctnet writes goes through it)."""

import json
import stat

import numpy as np
import pytest

from correctnet.errors import UnreadableFileError
from correctnet.fileio import atomic_write, read_json, write_json, write_text


@pytest.mark.parametrize("unique", [False, True])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, unique):
    path = write_text(tmp_path / "f.txt", "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path, unique=unique) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_temporary_names_and_modes(tmp_path):
    with atomic_write(tmp_path / "sub" / "a.pt") as tmp:     # parents are created
        assert tmp == tmp_path / "sub" / "a.pt.tmp"           # fixed: torch.save names by it
        tmp.write_bytes(b"x")
    with atomic_write(tmp_path / "b.csv", unique=True) as one, \
            atomic_write(tmp_path / "b.csv", unique=True) as two:
        assert one != two and one.name.startswith(".b.csv.") and one.suffix == ".tmp"
        one.write_text("1")
        two.write_text("2")
    assert (tmp_path / "b.csv").read_text() == "1"            # the last to finish wins
    assert stat.S_IMODE((tmp_path / "b.csv").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv", "sub"]


def test_json_round_trip_and_damaged_files(tmp_path):
    data = {"b": np.float32(0.5), "a": (1, 2), "s": np.arange(3)}
    path = write_json(tmp_path / "r.json", data, sort_keys=True)
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 0.5, "s": [0, 1, 2]}, indent=1,
                                          sort_keys=True)
    assert read_json(path) == {"a": [1, 2], "b": 0.5, "s": [0, 1, 2]}
    path.write_text("{not json")
    with pytest.raises(UnreadableFileError, match=r"stage result .*r\.json is unreadable.*rerun"):
        read_json(path, what="stage result", fix="delete it and rerun")
    with pytest.raises(TypeError, match="cannot store object as JSON"):
        write_json(tmp_path / "x.json", {"k": object()})
