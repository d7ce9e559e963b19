"""The training run under ``torchrun --nproc_per_node 2 -m sam_age train`` (gloo, CPU).

This file sorts before test_train.py on purpose: it runs while the pytest process is
still small, because the two training processes need most of a small machine's memory.
"""

import os
import subprocess

import pytest

from ..helpers.paths import torchrun
from .test_train import RECIPE_LAMBDAS, _args, _check_run, data, weights  # noqa: F401 (fixtures)

# The recipe without its cycle pass, which would double each step's work: this test is about
# the processes (one writer, per-rank RNG states, resume), test_train.py runs the whole recipe.
_i = RECIPE_LAMBDAS.index("--cycle_lambda")
NO_CYCLE = RECIPE_LAMBDAS[:_i] + RECIPE_LAMBDAS[_i + 2 :]


@pytest.mark.torchrun
@pytest.mark.timeout(3600)  # two torchrun runs, each allowed 1500 s
@pytest.mark.skipif(torchrun() is None, reason="torchrun is not installed")
def test_torchrun_two_processes(tmp_path, weights, data):
    exp = tmp_path / "exp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    base = [torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "sam_age"]
    # Adam keeps two buffers per weight where Ranger keeps three: two 256 px SAMs must fit
    # beside the rest of the test suite in the memory of a small machine.
    common = ["--batch_size", "1", "--test_batch_size", "1", "--save_interval", "2", "--optim_name", "adam"]
    for extra in (["--max_steps", "2"], ["--max_steps", "3", "--resume"]):
        run = subprocess.run(
            base + _args(exp, weights, data, *common, *extra, lambdas=NO_CYCLE),
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("finished: 3 steps") == 1  # one writer
    _check_run(exp, weights, world=2, ranger=False)
