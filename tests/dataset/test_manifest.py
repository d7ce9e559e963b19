"""The manifest's parts, merge and the listing split, without a model (fast)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sam_age.dataset.listing import name_items, shard
from sam_age.dataset.manifest import MANIFEST, PartWriter, merge, parts_dir, read_lines, read_state, staging_root


def _rec(inp, status="ok", **kw):
    return {"input": inp, "name": Path(inp).stem, "status": status, "files": [], **kw}


def test_names_are_unique_over_the_whole_listing_and_the_split_covers_it_once():
    paths = [Path(f"/x/{d}/{n}.jpg") for d in ("a", "b") for n in ("p", "q", "p2")] + [Path("/y/p.png")]
    items = name_items(paths)
    assert [i.name for i in items] == ["p", "q", "p2", "p_2", "q_2", "p2_2", "p_3"]
    assert [i.name for i in name_items([Path("/x/manifest.jsonl.png"), Path("/x/.sam-age.jpg")])] == [
        "manifest.jsonl_2",
        "sam-age",
    ]  # never the run's own names (nor hidden ones)
    for world in (1, 2, 3, 7, 10):
        shares = [shard(items, r, world) for r in range(world)]
        flat = sorted(i.index for s in shares for i in s)
        assert flat == list(range(len(items)))  # each input exactly once
        assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced
    with pytest.raises(ValueError):
        shard(items, 2, 2)


def test_part_lines_are_durable_per_commit_and_merge_keeps_the_latest(tmp_path):
    w = PartWriter(tmp_path, rank=1, world=2)
    w.add(_rec("/in/a.jpg", "started"))
    w.add(_rec("/in/b.jpg", "failed", reason="bad"))
    assert list(read_lines(w.path)) == []  # nothing before the commit
    w.commit()
    w.add(_rec("/in/a.jpg", "ok"))
    w.commit()
    lines = list(read_lines(w.path))
    assert [(r["input"], r["status"], r["rank"], r["world"]) for r in lines] == [
        ("/in/a.jpg", "started", 1, 2),
        ("/in/b.jpg", "failed", 1, 2),
        ("/in/a.jpg", "ok", 1, 2),
    ]
    state = read_state(tmp_path)  # an open (live) part counts
    assert state["/in/a.jpg"]["status"] == "ok" and state["/in/b.jpg"]["status"] == "failed"
    merge(tmp_path, own=w.path)
    assert w.path.exists()  # a live writer's part is kept
    w.close()
    merge(tmp_path)
    assert not parts_dir(tmp_path).exists() and not (tmp_path / ".sam-age").exists()
    lines = [json.loads(x) for x in (tmp_path / MANIFEST).read_text().splitlines()]
    assert [(r["input"], r["status"]) for r in lines] == [("/in/a.jpg", "ok"), ("/in/b.jpg", "failed")]
    # a later run's line for b wins; a's stays
    w2 = PartWriter(tmp_path)
    w2.add(_rec("/in/b.jpg", "ok"))
    w2.close()
    merge(tmp_path)
    lines = [json.loads(x) for x in (tmp_path / MANIFEST).read_text().splitlines()]
    assert [(r["input"], r["status"]) for r in lines] == [("/in/a.jpg", "ok"), ("/in/b.jpg", "ok")]


def test_a_line_cut_by_a_kill_is_skipped(tmp_path):
    w = PartWriter(tmp_path)
    w.add(_rec("/in/a.jpg"))
    w.commit()
    with open(w.path, "a") as f:
        f.write('{"input": "/in/b.jpg", "stat')  # the kill came mid-line
    assert [r["input"] for r in read_lines(w.path)] == ["/in/a.jpg"]
    w.close()


_HOLD = """
import sys, time
from pathlib import Path
from sam_age.dataset.manifest import PartWriter
w = PartWriter(Path(sys.argv[1]))
w.add({"input": "/in/started.jpg", "status": "started", "files": []})
w.commit()
print(w.path, flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_dead_writers_part_is_merged_and_removed_a_live_ones_kept(tmp_path):
    # a live writer in another process: its part and staging folder stay
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path), "60"], stdout=subprocess.PIPE, text=True)
    try:
        part = Path(proc.stdout.readline().strip())
        (staging_root(tmp_path) / part.name[: -len(".jsonl")]).mkdir(parents=True)
        (staging_root(tmp_path) / "gone-1-r0-deadbeef").mkdir()  # a dead process's staging
        merge(tmp_path)
        assert part.exists() and (staging_root(tmp_path) / part.name[: -len(".jsonl")]).exists()
        assert not (staging_root(tmp_path) / "gone-1-r0-deadbeef").exists()
        line = json.loads((tmp_path / MANIFEST).read_text())
        assert line["input"] == "/in/started.jpg" and line["status"] == "interrupted"
    finally:
        proc.kill()  # SIGKILL: the kernel drops its lock
        proc.wait()
    merge(tmp_path)
    assert not part.exists() and not (tmp_path / ".sam-age").exists()
    line = json.loads((tmp_path / MANIFEST).read_text())
    assert line["status"] == "interrupted" and "next run" in line["reason"]


def test_concurrent_merges_lose_nothing(tmp_path):
    """Several processes merging at once, each with parts of its own: every line survives."""
    code = """
import sys
from pathlib import Path
from sam_age.dataset.manifest import PartWriter, merge
out, k = Path(sys.argv[1]), int(sys.argv[2])
for j in range(5):
    w = PartWriter(out, rank=k)
    w.add({"input": f"/in/{k}-{j}.jpg", "status": "ok", "files": []})
    w.close()
    merge(out)
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(k)]) for k in range(4)]
    deadline = time.time() + 120
    for p in procs:
        assert p.wait(timeout=max(1, deadline - time.time())) == 0
    merge(tmp_path)
    inputs = sorted(json.loads(x)["input"] for x in (tmp_path / MANIFEST).read_text().splitlines())
    assert inputs == sorted(f"/in/{k}-{j}.jpg" for k in range(4) for j in range(5))
