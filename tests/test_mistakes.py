"""A catalogue of mistakes a user makes, run through the command line: each gets exit code 2 and one line on
stderr, never a traceback, and leaves the results folder (and the data root) exactly as it was."""

import hashlib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ganbench.cli import main

SMOKE = ["--protocol", "smoke", "--set", "steps=2", "--set", "eval_every=2"]


def _snapshot(*folders: Path) -> dict[str, str]:
    """Every file and folder under the given folders, with a hash of each file's bytes."""
    out = {}
    for top in folders:
        if not top.exists():
            out[str(top)] = "absent"
            continue
        for p in sorted(top.rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A results folder that already holds one complete run, a data root, a file where a folder belongs,
    a run folder with a garbage checkpoint, and image folders of the wrong kinds (shared: no case may
    change it)."""
    from torchvision.utils import save_image

    tmp_path = tmp_path_factory.mktemp("mistakes")
    results = tmp_path / "results"
    r = CliRunner().invoke(main, ["run", "--variant", "dcgan", *SMOKE, "--set", "metrics=[]", "--seed", "0",
                                  "--results", str(results)])
    assert r.exit_code == 0, r.output
    run = results / "smoke" / "dcgan" / "seed-0"
    garbage = tmp_path / "garbage-run"
    garbage.mkdir()
    for name in ("spec.json", "summary.json", "metrics.jsonl"):
        (garbage / name).write_bytes((run / name).read_bytes())
    (garbage / "checkpoint.pt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.toml").mkdir()
    (tmp_path / "latin1.toml").write_bytes("description = 'caf\xe9'\n".encode("latin-1"))
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("text")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "pngs").mkdir()
    for i in range(4):
        save_image(torch.rand(3, 16, 16), tmp_path / "pngs" / f"{i}.png")
    (tmp_path / "data").mkdir()
    (tmp_path / "base5.toml").write_text("base = 5\n")
    (tmp_path / "protostr.toml").write_text('protocol = "smoke"\n')
    (tmp_path / "seeds0.toml").write_text('variants = ["dcgan"]\nseeds = 0\n[protocol]\nbase = "smoke"\n')
    return tmp_path


def _cases(w: Path) -> dict[str, tuple[list[str], str]]:
    res = ["--results", str(w / "results")]
    run = ["run", "--variant", "dcgan", *SMOKE, *res]
    cases = {
        # tracebacks before
        "protocol file: base = 5": (["run", "--variant", "dcgan", "--protocol", str(w / "base5.toml"), *res],
                                    "base=5 must be the name of a preset"),
        "protocol file: protocol is a string": (["run", "--variant", "dcgan", "--protocol", str(w / "protostr.toml"),
                                                 *res], "must be a table"),
        "report --out under a file": (["report", *res, "--out", str(w / "a-file" / "r.md")], "cannot write there"),
        "probe on a garbage checkpoint": (["probe", str(w / "garbage-run")], "not a readable checkpoint"),
        "sample on a garbage checkpoint": (["sample", str(w / "garbage-run")], "not a readable checkpoint"),
        "interpolate on a garbage checkpoint": (["interpolate", str(w / "garbage-run")], "not a readable checkpoint"),
        # debris before
        "unknown data set": ([*run, "--set", 'dataset="mnisst"'], "did you mean"),
        "unknown metric": ([*run, "--set", 'metrics=["qualty"]'], "did you mean: quality"),
        "mnist with a data root that lacks it": ([*run, "--set", 'dataset="mnist"', "--data-root", str(w / "data")],
                                                 "train-images-idx3-ubyte"),
        "folder data set: empty": ([*run, "--set", f'dataset="folder:{w / "empty"}"'], "no images"),
        "folder data set: no images": ([*run, "--set", f'dataset="folder:{w / "no-images"}"'], "no images"),
        "folder data set: corrupt png": ([*run, "--set", f'dataset="folder:{w / "corrupt"}"'], "not a readable image"),
        "folder data set: quality has no extractor": (
            [*run, "--set", f'dataset="folder:{w / "pngs"}"', "--set", 'metrics=["quality"]', "--set", "channels=3"],
            "metric 'quality' cannot run"),
        # accepted nonsense before
        "negative seed": (["run", "--variant", "dcgan", *SMOKE, "--seed", "-1", *res], "--seed"),
        "suite with seeds = 0": (["run", "--suite", str(w / "seeds0.toml"), *res], "seeds=0 is not allowed"),
        # three-line usage errors before
        "--seeds 0": (["run", "--variant", "dcgan", "--seeds", "0", *res], "--seeds"),
        "--jobs 0": (["run", "--variant", "dcgan", "--jobs", "0", *res], "--jobs"),
        "--together 0": ([*run, "--together", "0"], "'--together': 0 is not in the range x>=1"),
        "list no-such-kind": (["list", "no-such-kind"], "no-such-kind"),
        "list --format yaml": (["list", "--format", "yaml"], "yaml"),
        "report --format pdf": (["report", *res, "--format", "pdf"], "pdf"),
        "show --resolution 48": (["show", "dcgan", "--resolution", "48"], "48"),
        "show --width 0": (["show", "dcgan", "--width", "0"], "--width"),
        # more of the same kind
        "unknown variant": (["run", "--variant", "dcgam", *SMOKE, *res], "did you mean: dcgan"),
        "unknown protocol key": ([*run, "--set", "stepz=3"], "did you mean: steps"),
        "changed protocol under the same name": ([*run, "--set", "metrics=[]", "--seed", "0", "--set", "steps=4"],
                                                 "holds a run with other inputs"),
        "unknown command": (["trian"], "trian"),
        "report: unknown baseline": (["report", *res, "--baseline", "dcgam"], "did you mean: dcgan"),
        "report: unknown correction": (["report", *res, "--correction", "bonferroni"], "bonferroni"),
        "plan on a missing folder": (["plan", str(w / "nowhere")], "no such results folder"),
        "suite file under a file": (["run", "--suite", str(w / "a-file" / "s.toml"), *res], "cannot be read"),
        "suite file is a folder": (["run", "--suite", str(w / "empty"), *res], "is a directory"),
        "protocol file is a folder": (["run", "--variant", "dcgan", "--protocol", str(w / "empty.toml"), *res],
                                      "cannot be read"),
        "protocol file not UTF-8": (["run", "--variant", "dcgan", "--protocol", str(w / "latin1.toml"), *res],
                                    "not valid TOML"),
    }
    if not torch.cuda.is_available():
        cases["--device cuda without a GPU"] = ([*run, "--device", "cuda"], "no CUDA device")
    return cases


CASE_NAMES = sorted(_cases(Path("/x")))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_a_mistake_gets_one_line_exit_2_and_changes_nothing(workspace, case):
    cases = _cases(workspace)
    if case not in cases:
        pytest.skip("this machine has a GPU")
    args, expect = cases[case]
    watched = (workspace / "results", workspace / "data", workspace / "empty", workspace / "corrupt",
               workspace / "pngs")
    before = _snapshot(*watched)
    r = CliRunner().invoke(main, args)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert expect in lines[0], lines[0]
    assert "Traceback" not in r.output
    assert _snapshot(*watched) == before


def test_help_is_still_there():
    r = CliRunner().invoke(main, ["run", "--help"])
    assert r.exit_code == 0 and "--variant" in r.stdout
