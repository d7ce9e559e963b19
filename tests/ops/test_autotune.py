"""sam_age.autotune: the decision logic with injected timings (no test depends on real
timing), the cache's keying and invalidation, and the forms it picks staying equal to the
reference."""

import json

import pytest
import torch

from sam_age import autotune
from sam_age.autotune import Tuner, choose, machine_key, measure, mode_from_env


def test_choose_keeps_a_fast_form_only_when_faster_than_plain_by_the_margin():
    assert choose({"packed": [0.5, 0.9], "plain": [1.0, 1.1]}, "plain") == "packed"  # best of each
    assert choose({"packed": [0.97], "plain": [1.0]}, "plain") == "plain"  # within 5%: plain
    assert choose({"packed": [2.0], "plain": [1.0]}, "plain") == "plain"  # slower: never kept
    assert choose({"a": [0.5], "b": [0.4], "plain": [1.0]}, "plain") == "b"
    assert choose({"packed": [], "plain": [1.0]}, "plain") == "plain"  # no times never wins
    with pytest.raises(ValueError):
        choose({"packed": [1.0]}, "plain")


class Clock:
    """Each call of a form advances the clock by that form's cost."""

    def __init__(self, costs):
        self.t, self.costs, self.calls = 0.0, costs, []

    def __call__(self):
        return self.t

    def fns(self):
        def run(f):
            def fn():
                self.calls.append(f)
                self.t += self.costs[f].pop(0) if isinstance(self.costs[f], list) else self.costs[f]
                return f"out-{f}"

            return fn

        return {f: run(f) for f in self.costs}


def test_measure_interleaves_alternating_order_after_a_warmup():
    clock = Clock({"a": [9.0, 1.0, 1.0, 1.0], "b": [9.0, 2.0, 2.0, 2.0]})
    times, outs = measure(clock.fns(), reps=3, clock=clock)
    assert clock.calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert times == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}  # the warm-up (9 s) not counted
    assert outs == {"a": "out-a", "b": "out-b"}
    clock = Clock({"a": 1.0, "b": 2.0})
    times, _ = measure(clock.fns(), reps=2, clock=clock, warmup=False)
    assert clock.calls == ["a", "b", "b", "a"] and times == {"a": [1.0, 1.0], "b": [2.0, 2.0]}


def test_tuner_measures_once_caches_per_machine_and_returns_the_chosen_output(tmp_path):
    path = tmp_path / "autotune.json"
    clock = Clock({"packed": 1.0, "plain": 3.0})
    tuner = Tuner(path, "on", reps=2, clock=clock)
    assert tuner.pick("conv:x", clock.fns(), plain="plain", rule="packed") == ("packed", "out-packed")
    n = len(clock.calls)
    assert tuner.pick("conv:x", clock.fns(), plain="plain", rule="packed") == ("packed", None)
    assert len(clock.calls) == n  # the second time: no measurement
    data = json.loads(path.read_text())
    entry = data["machines"][tuner.key]
    assert entry["choices"]["conv:x"]["form"] == "packed" and entry["machine"]["torch"] == torch.__version__
    # a later process reads the cache: nothing measured
    later = Clock({"packed": 5.0, "plain": 1.0})
    again = Tuner(path, "on", clock=later)
    assert again.pick("conv:x", later.fns(), plain="plain", rule="packed") == ("packed", None)
    assert later.calls == []
    # retune: measured again and replaced
    redo = Tuner(path, "retune", reps=1, clock=later)
    assert redo.pick("conv:x", later.fns(), plain="plain", rule="packed")[0] == "plain"
    assert json.loads(path.read_text())["machines"][tuner.key]["choices"]["conv:x"]["form"] == "plain"
    # off: the rule, nothing measured, nothing written
    off_clock = Clock({"packed": 1.0, "plain": 1.0})
    off = Tuner(tmp_path / "off.json", "off", clock=off_clock)
    assert off.pick("conv:x", off_clock.fns(), plain="plain", rule="packed") == ("packed", None)
    assert off_clock.calls == [] and not (tmp_path / "off.json").exists()
    assert off.summary("conv:") == "packed"


def test_cache_key_changes_with_isa_cap_cpu_capability_and_torch(tmp_path, monkeypatch):
    base = autotune.machine({})
    keys = {machine_key(base)}
    for env in (
        {"ONEDNN_MAX_CPU_ISA": "AVX2"},
        {"ATEN_CPU_CAPABILITY": "avx2"},
        {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    ):
        keys.add(machine_key(autotune.machine(env)))
    keys.add(machine_key({**base, "torch": "0.0.1"}))
    keys.add(machine_key({**base, "cpu": "Other CPU"}))
    assert len(keys) == 6
    # a choice made under one ISA cap is not used under another
    path = tmp_path / "autotune.json"
    clock = Clock({"packed": 1.0, "plain": 3.0})
    Tuner(path, "on", reps=1, clock=clock, env={}).pick("conv:x", clock.fns(), "plain", "packed")
    capped = Clock({"packed": 3.0, "plain": 1.0})
    t = Tuner(path, "on", reps=1, clock=capped, env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert t.pick("conv:x", capped.fns(), "plain", "packed")[0] == "plain" and capped.calls
    assert len(json.loads(path.read_text())["machines"]) == 2


def test_a_broken_or_foreign_cache_file_is_measured_again(tmp_path):
    path = tmp_path / "autotune.json"
    for text in ("not json", json.dumps({"format": 999, "machines": {}}), json.dumps([1, 2])):
        path.write_text(text)
        clock = Clock({"packed": 1.0, "plain": 3.0})
        assert Tuner(path, "on", reps=1, clock=clock).pick("conv:x", clock.fns(), "plain", "packed")[0] == "packed"
        assert clock.calls and json.loads(path.read_text())["format"] == autotune.FORMAT


@pytest.mark.parametrize(
    "value,mode",
    [("", "on"), ("1", "on"), ("on", "on"), ("0", "off"), ("OFF", "off"), ("false", "off"), ("retune", "retune")],
)
def test_mode_from_env(value, mode):
    assert mode_from_env({"SAM_AGE_AUTOTUNE": value}) == mode
    with pytest.raises(ValueError):
        Tuner(None, "sometimes")


def test_summary_names_the_forms_used_per_prefix():
    t = Tuner(None, "off")
    for name, rule in (("conv:a", "packed"), ("conv:b", "plain"), ("conv:c", "packed"), ("generator:1", "shared")):
        t.pick(name, {"packed": None, "plain": None, "shared": None}, "plain", rule)
    assert t.summary("conv:") == "packed 2, plain 1" and t.summary("generator:") == "shared"
    assert t.summary("dtype:") is None


def test_isa_cap_hides_native_bf16(monkeypatch):
    from sam_age import engine

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not engine.cpu_has_native_bf16(["avx512_bf16"])
    assert engine.cpu_kind(["avx2", "avx512f", "avx512_bf16"]) == "AVX2"
    assert engine.choose_dtype("auto", "cpu")[0] == torch.float32
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert engine.cpu_has_native_bf16(["avx512_bf16"])
    assert engine.cpu_kind(["avx2", "avx512f", "avx512_bf16", "amx_bf16"]) == "AVX-512 bf16"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert engine.cpu_kind(["avx2"]) == "AVX2" and engine.cpu_kind(["avx2", "avx512f"]) == "AVX-512"


@pytest.mark.parametrize("measured", ["bfloat16", "float32"])
def test_choose_dtype_keeps_bf16_only_when_measured_faster(monkeypatch, measured):
    from sam_age import engine

    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda flags=None: True)
    monkeypatch.setattr(engine, "cpu_kind", lambda flags=None: "AVX-512 bf16")
    clock = Clock({"bfloat16": 1.0 if measured == "bfloat16" else 3.0, "float32": 2.0})

    class T(Tuner):
        def pick(self, name, fns, plain, rule, reps=None, warmup=True):
            assert set(fns) == {"bfloat16", "float32"} and plain == "float32"
            return super().pick(name, {f: clock.fns()[f] for f in fns}, plain, rule, reps, warmup)

    dtype, why = engine.choose_dtype("auto", "cpu", T(None, "on", reps=1, clock=clock))
    assert dtype == getattr(torch, measured) and why.startswith("AVX-512 bf16")
    # asked explicitly: kept, nothing measured
    assert engine.choose_dtype("float32", "cpu", T(None, "on", clock=clock)) == (torch.float32, "asked: float32")
