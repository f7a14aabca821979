"""tools/frame_difference.py: the mean pairwise difference of aligned test frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_frames(folder: Path, values: list[int], prefix: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, value in enumerate(values):
        frame = np.full((4, 4, 3), value, dtype=np.uint8)
        Image.fromarray(frame).save(folder / f"{prefix}{index:03d}.png")


def test_pairs_of_runs_and_particles(frame_difference, tmp_path: Path, capsys) -> None:
    write_frames(tmp_path / "run", [0, 255])
    write_frames(tmp_path / "particles", [0, 0], prefix="p0-")
    write_frames(tmp_path / "particles", [51, 255], prefix="p1-")
    specs = [str(tmp_path / "run"), f"{tmp_path / 'particles'}:p0", f"{tmp_path / 'particles'}:p1"]
    differences = frame_difference.pairwise_differences(specs)
    # run vs p0: frames equal, then 1.0 apart; run vs p1: 0.2 then 0; p0 vs p1: 0.2 then 1.0
    assert differences[(specs[0], specs[1])] == pytest.approx(0.5)
    assert differences[(specs[0], specs[2])] == pytest.approx(0.1)
    assert differences[(specs[1], specs[2])] == pytest.approx(0.6)
    assert frame_difference.main(specs) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "mean 0.4000 over 3 pair(s)"


def test_missing_or_unaligned_frames_are_refused(frame_difference, tmp_path: Path) -> None:
    write_frames(tmp_path / "a", [0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no frames"):
        frame_difference.pairwise_differences([str(tmp_path / "a"), str(tmp_path / "empty")])
    write_frames(tmp_path / "b", [0], prefix="p1-")
    (tmp_path / "b" / "p1-000.png").rename(tmp_path / "b" / "p1-007.png")
    with pytest.raises(SystemExit, match="share no frame"):
        frame_difference.pairwise_differences([str(tmp_path / "a"), f"{tmp_path / 'b'}:p1"])
    with pytest.raises(SystemExit, match="give FOLDER:p0"):  # particles' frames, no suffix
        frame_difference.pairwise_differences([str(tmp_path / "a"), str(tmp_path / "b")])
    small = tmp_path / "small:x"  # a ':' in a folder name is no particle suffix
    small.mkdir()
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(small / "000.png")
    with pytest.raises(SystemExit, match="compare frames of one size"):
        frame_difference.pairwise_differences([str(tmp_path / "a"), str(small)])
