"""benchmarks/run.py's ISA levels: which levels a CPU offers, and the side-by-side table."""

import importlib.util
from argparse import Namespace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "benchmarks" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_levels_offered_by_the_cpu_flags():
    run = _run_module()
    args = Namespace(isa=None, quick=False, device="cpu")
    zen4 = {"flags": ["avx2", "avx512f", "avx512_bf16"]}
    assert [lv for lv, _ in run.isa_levels(args, zen4)] == ["AVX2", "AVX512_CORE", "AVX512_CORE_BF16"]
    assert dict(run.isa_levels(args, zen4))["AVX2"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert [lv for lv, _ in run.isa_levels(args, {"flags": ["avx2", "avx512f", "avx512_bf16", "amx_bf16"]})][
        -1
    ] == "AVX512_CORE_AMX"
    assert run.isa_levels(Namespace(isa=None, quick=True, device="cpu"), zen4) == [("native", {})]
    assert [lv for lv, _ in run.isa_levels(Namespace(isa="avx2,native", quick=False, device="cpu"), zen4)] == [
        "AVX2",
        "native",
    ]
    with pytest.raises(SystemExit, match="not offered"):
        run.isa_levels(Namespace(isa="AVX512_CORE_AMX", quick=False, device="cpu"), zen4)


def test_side_by_side_table():
    run = _run_module()
    ours = {
        "case": "ours",
        "default_dtype": "float32",
        "dtypes": ["float32"],
        "ages": 11,
        "batch_size": None,
        "why": "AVX2: float32",
        "per_call_s": {"float32/generator": 2.0, "float32/age_encoder": 1.0, "float32/pretrained_encoder": 1.0},
        "seconds": {"float32/schedule": 30.0, "float32/latency": 3.0, "float32/slider": 2.0},
        "forms": {"conv": "packed 20, plain 4", "generator": "shared"},
        "peak_memory_mib": 2048,
    }
    report = {
        "device": "cpu",
        "device_name": "EPYC",
        "cpu": {"model": "EPYC", "flags": ["avx2"], "cores": 2},
        "date": "d",
        "torch": "t",
        "threads": 2,
        "commit": "c",
        "load_average": "1",
        "command": "x",
        "weights": "w",
        "ages": 11,
        "levels": [
            {
                "isa": "AVX2",
                "cases": [ours, {"case": "original", "seconds_per_face": 120.0, "ages": 11, "peak_memory_mib": 1}],
            },
            {"isa": "AVX512_CORE", "cases": [dict(ours, seconds={"float32/schedule": 20.0})]},
        ],
    }
    text = run._markdown_levels(report)
    assert "| | AVX2 | AVX512_CORE |" in text and "| float32 vs original | 4.00x |" in text
    assert "packed 20, plain 4; shared" in text and "## ISA level AVX2" in text
