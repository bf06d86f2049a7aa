"""``cuda_graph = true`` without a GPU: the reason it is not followed, the run unchanged, and the parts of the
capture that run anywhere (the snapshot that undoes the warm-up steps, the addresses that say when to capture
again). The capture itself is tested on a GPU (tests/test_cuda.py)."""

from __future__ import annotations

import pytest
import torch

from ganbench.graphs import Snapshot, addresses, graph_problem
from ganbench.protocol import resolve
from ganbench.record import RunSpec
from ganbench.train import STEP_STATS, Trainer


def trainer(tmp_path, *sets) -> Trainer:
    t = Trainer(RunSpec(resolve("smoke", ['device="cpu"', "metrics=[]", *sets]), "dcgan", 0, tmp_path))
    t.setup()
    return t


def steps(t: Trainer, start: int, n: int) -> list[list[float]]:
    rows = []
    for s in range(start, start + n):
        acc = torch.zeros(len(STEP_STATS))
        t.train_step(s, acc)
        rows.append(acc.tolist())
    return rows


def test_the_reasons_a_graph_is_not_captured():
    assert "CUDA device" in graph_problem(torch.device("cpu"), compile=False)
    assert "compile=true" in graph_problem(torch.device("cuda"), compile=True)
    assert graph_problem(torch.device("cuda"), compile=False) is None


def test_on_a_cpu_the_run_trains_as_without_graphs_and_says_so(tmp_path):
    with pytest.warns(UserWarning, match="CUDA graphs need a CUDA device"):
        with_flag = trainer(tmp_path / "a", "cuda_graph=true")
    assert with_flag.graph is None and not with_flag.opt_g.defaults["capturable"]
    assert steps(with_flag, 0, 3) == steps(trainer(tmp_path / "b"), 0, 3)   # bit for bit


def test_cuda_graph_is_how_a_run_trains_not_what_it_is(tmp_path):
    p = resolve("smoke")
    assert RunSpec(p, "dcgan", 0).run_id == RunSpec(resolve("smoke", ["cuda_graph=true"]), "dcgan", 0).run_id


@pytest.mark.parametrize("warm", [0, 2], ids=["fresh Adam", "Adam with state"])
def test_the_snapshot_undoes_steps_so_the_run_continues_as_if_they_never_happened(tmp_path, warm):
    a, b = trainer(tmp_path / "a"), trainer(tmp_path / "b")
    assert steps(a, 0, warm) == steps(b, 0, warm)
    snap = Snapshot(a)
    held = addresses(a) if warm else None
    steps(a, 100, 3)                       # the warm-up's steps: other batches, moved weights, BN and Adam state
    snap.restore()
    if warm:
        assert addresses(a) == held        # restored in place: a graph holding these addresses stays valid
    assert steps(a, warm, 4) == steps(b, warm, 4)
    for net in ("G", "D"):
        for (k, x), y in zip(getattr(a, net).state_dict().items(), getattr(b, net).state_dict().values()):
            assert torch.equal(x, y), (net, k)


def test_loading_a_checkpoint_changes_the_addresses_a_graph_holds(tmp_path):
    t = trainer(tmp_path)
    steps(t, 0, 2)
    t._save_checkpoint()
    held = addresses(t)
    assert t._load_checkpoint()
    assert addresses(t) != held            # Adam's state is new tensors: the graph is captured again


def test_adam_is_made_capturable_after_loading_a_state_saved_without(tmp_path):
    from ganbench.graphs import make_capturable

    t = trainer(tmp_path)
    steps(t, 0, 2)
    state = t.opt_g.state_dict()
    t.opt_g.load_state_dict(state)
    assert not t.opt_g.param_groups[0]["capturable"]
    make_capturable(t.opt_g, torch.device("cpu"))
    assert all(g["capturable"] for g in t.opt_g.param_groups)
    assert all(s["step"].dtype == torch.float32 for s in t.opt_g.state.values())
