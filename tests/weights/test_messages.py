"""One-line errors are never cut mid-sentence (issue 17: ``... there is a high``)."""

from __future__ import annotations

import pytest

from sam_age.errors import CheckpointError, brief

TORCH_ZIP = (
    "PytorchStreamReader failed reading zip archive: failed finding central directory. This is an "
    "internal miniz error. If you are seeing this error, there is a high likelihood that your checkpoint "
    "file is corrupted. This can happen if the checkpoint was not saved properly."
)


def test_brief_keeps_whole_sentences():
    assert brief(TORCH_ZIP) == (
        "PytorchStreamReader failed reading zip archive: failed finding central directory. "
        "This is an internal miniz error."
    )
    long_one = "word " * 60 + "end."
    assert brief(long_one) == long_one.strip()  # one sentence longer than the limit stays whole
    assert brief("first line.\nsecond line") == "first line."
    assert brief("") == ""


def test_a_truncated_checkpoint_is_reported_in_whole_sentences(small_sam_path, tmp_path):
    from sam_age.checkpoints import load_sam

    cut = tmp_path / "sam.pt"
    with open(small_sam_path, "rb") as f:
        cut.write_bytes(f.read(100_000))
    with pytest.raises(CheckpointError) as info:
        load_sam(cut)
    msg = str(info.value)
    assert "\n" not in msg and "failed finding central directory." in msg
    assert msg.endswith(".)") and "there is a high" not in msg
