"""``sam_age.fileio``: files and folders written atomically get the mode open() gives them."""

from __future__ import annotations

import json
import os

from PIL import Image

from sam_age.fileio import atomic_dir, atomic_write, write_text

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
