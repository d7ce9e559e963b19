"""``sam_age.fileio``: files and folders written atomically get the mode open() gives them."""

from __future__ import annotations

import json
import os

from PIL import Image

from sam_age.fileio import atomic_dir, atomic_link, atomic_write, write_text

from .helpers.output import mode as _mode


def test_written_files_get_the_umask_mode(tmp_path, umask022):
    import torch

    from sam_age.checkpoints.formats import save_torch

    json_file = write_text(tmp_path / "summary.json", json.dumps({"a": 1}))
    ckpt = save_torch({"w": torch.zeros(2)}, tmp_path / "model.pt")
    img = atomic_write(tmp_path / "img.png", lambda f: Image.new("RGB", (4, 4)).save(f, format="PNG"))
    for p in (json_file, ckpt, img):
        assert _mode(p) == 0o644, p
    with atomic_dir(tmp_path / "folder") as d:
        (d / "x").write_text("x")
    assert _mode(tmp_path / "folder") == 0o755
    os.umask(0o077)  # a private umask stays private
    assert _mode(write_text(tmp_path / "private.json", "{}")) == 0o600
    os.chmod(json_file, 0o640)  # an existing file keeps its mode, as open() keeps it
    assert _mode(write_text(json_file, "{}")) == 0o640


def test_atomic_link_names_the_same_bytes_and_a_later_write_parts_them(tmp_path, monkeypatch):
    best = write_text(tmp_path / "best_model.pt", "step 2")
    write_text(tmp_path / "iteration_2.pt", "older")  # an earlier file of that name is replaced
    assert atomic_link(best, tmp_path / "iteration_2.pt")
    assert (tmp_path / "iteration_2.pt").samefile(best)
    write_text(best, "step 5")  # replaced by rename: the other name keeps its bytes
    assert (tmp_path / "iteration_2.pt").read_text() == "step 2" and best.read_text() == "step 5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.pt", "iteration_2.pt"]

    def no_links(*a, **k):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # a file system without hard links: nothing changes
    assert not atomic_link(best, tmp_path / "iteration_3.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.pt", "iteration_2.pt"]
