"""The GPU check: everything ganbench wants to know about one GPU machine, in one run under a deadline.

    bash benchmarks/gpu_check.sh                          # on the GPU machine: results/published/gpu/ and gpu.md
    bash benchmarks/gpu_check.sh --device cpu --quick --out /tmp/gpu-dry     # a CPU dry run of the same stages

Stages, in order; each one writes its own JSON file (atomically) when it ends, and the Markdown summary
(``<out>.md``, so ``results/published/gpu.md`` by default) is rewritten after every stage:

1. ``env``         nvidia-smi, versions, the device, bf16 support, the data set used  -> env.json, nvidia-smi.txt
2. ``tests``       the CUDA tests (tests/test_cuda.py; skipped without CUDA)         -> tests.json, tests.txt
3. ``data``        the data set loaded once (decoded and cached for the later stages)  -> data.json
4. ``throughput``  ganbench's step at fp32 and bf16 against the PyTorch DCGAN example's loop (fp32),
                   benchmarks/throughput.py's two loops, at the shapes of the GPU protocols  -> throughput.json
5. ``graphs``      the same with the step captured as one CUDA graph (``cuda_graph = true``)  -> graphs.json
6. ``batched``     K seeds trained together (ganbench.batched) against one, at fp32 and bf16  -> batched.json
7. ``concurrent``  N runs at a time, one process each                                -> concurrent.json
8. ``mfu``         model FLOPs utilisation of every figure above                      -> mfu.json
9. ``study``       benchmarks/paper-64.toml through ``ganbench run``, sized to the time left  -> study.json,
                   study.log, records/
10. ``report``     ``ganbench report`` on those records                               -> report.md, report.json

``--skip`` leaves stages out (``--plan-from`` then sizes the study from an earlier check's measurements).

A global deadline (``--deadline-s``, from the start) is checked before each stage, and each stage runs
under an alarm set to the time left, so the script stops by itself, keeping every stage it finished and
whatever part of the stage it was in (rows measured so far, runs already recorded). Everything from a
CPU is marked "CPU DRY RUN".
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402

from ganbench.files import atomic_write_text, write_json  # noqa: E402

PEAK_BF16_DENSE = 989e12   # FLOP/s: H100 / H200 SXM, dense bf16 tensor cores (NVIDIA's datasheet; 1979 is with sparsity)
DRY = "CPU DRY RUN"

# (name, resolution, width, batch): the shapes of the GPU protocols cifar10-32 and paper-64 (3 channels)
GPU_CONFIGS = [("cifar10-32 shape", 32, 64, 128), ("paper-64 shape", 64, 128, 128)]
QUICK_CONFIGS = [("smoke shape", 16, 8, 32), ("smoke shape at 32 px", 32, 8, 32)]


class StageTimeout(Exception):
    """The stage's share of the deadline ran out."""


def _on_alarm(signum, frame):
    raise StageTimeout()


@contextlib.contextmanager
def alarm(seconds: float):
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_cmd(cmd: list[str], timeout: float, log: Path | None = None, env: dict | None = None,
            header: str = "") -> tuple[int, str]:
    """Run ``cmd`` in its own process group; on timeout (or this stage's alarm) end that group, first with
    SIGTERM, then SIGKILL. Returns (exit code, output); 124 when it was stopped."""
    out = open(log, "w") if log else subprocess.PIPE
    if log and header:
        out.write(header + "\n")
        out.flush()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        text, _ = proc.communicate(timeout=max(timeout, 1))
        rc = proc.returncode
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if sys.exc_info()[0] is not subprocess.TimeoutExpired:
            raise
        text, rc = None, 124
    if log:
        out.close()
        text = log.read_text(errors="replace")
    return rc, text or ""


class Check:
    def __init__(self, args):
        self.args = args
        self.dry = args.device != "cuda"
        self.label = DRY if self.dry else ""
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.summary_path = Path(args.summary) if args.summary else self.out.with_suffix(".md")
        self.t0 = time.monotonic()
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.end = self.t0 + args.deadline_s
        self.stages: list[dict] = []
        self.results: dict[str, object] = {}
        self.configs = QUICK_CONFIGS if args.quick else GPU_CONFIGS
        self.device = torch.device(args.device)
        self.py = sys.executable
        self.dataset = "digits"

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def proto(self, res: int, width: int, batch: int, precision: str = "fp32", *extra: str):
        from ganbench.protocol import resolve

        return resolve("smoke", [f'dataset="{self.dataset}"', f"resolution={res}", "channels=3", f"g_width={width}",
                                 f"d_width={width}", "z_dim=100", f"batch_size={batch}", f'device="{self.args.device}"',
                                 f'precision="{precision}"', *extra])

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    # -- running the stages ---------------------------------------------------------------------------------

    def stage(self, name: str, fn, budget_s: float, min_s: float, reserve_s: float = 0.0) -> None:
        """Run ``fn(rows)`` under min(budget, time left - reserve); ``rows`` keeps what it finished."""
        left = self.left() - reserve_s
        rows: list = []
        t = time.monotonic()
        record = {"stage": name, "label": self.label, "device": self.args.device, "quick": self.args.quick}
        if name in self.args.skip:
            record.update(status="skipped", reason="--skip")
            result = None
        elif left < min_s:
            record.update(status="skipped", reason=f"{left:.0f} s left before the deadline, the stage needs {min_s:.0f} s")
            result = None
        else:
            limit = min(budget_s, left)
            record["limit_s"] = round(limit, 1)
            try:
                with alarm(limit):
                    result = fn(rows)
                record["status"] = "done"
            except StageTimeout:
                record.update(status="stopped at its time limit", reason=f"{limit:.0f} s")
                result = {"rows": rows, "partial": True}
            except Exception as exc:   # a failed stage is a result; the next stages still run
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
                result = {"rows": rows, "partial": True}
        record["seconds"] = round(time.monotonic() - t, 1)
        record["result"] = result
        self.results[name] = result
        self.stages.append({k: v for k, v in record.items() if k not in ("result", "traceback")})
        write_json(self.out / f"{name}.json", record)
        print(f"[{self.elapsed():5.0f} s] {name}: {record['status']} in {record['seconds']} s"
              + (f" ({record.get('reason') or record.get('error')})" if record["status"] != "done" else ""), flush=True)
        self.write_summary()

    # -- 1. environment -------------------------------------------------------------------------------------

    def env(self, rows) -> dict:
        from ganbench.device import cpu_capability, native_bf16, resolve_precision
        from ganbench.protocol import Protocol

        try:
            smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            smi = f"nvidia-smi: not available here ({type(exc).__name__})"
        atomic_write_text(self.out / "nvidia-smi.txt", (f"{DRY}\n" if self.dry else "") + smi)
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            driver = None
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        # a device machine gets the working tree and perhaps a stale .git: the caller names the commit
        git = os.environ.get("GPU_CHECK_COMMIT") or git or "unknown"
        info = {
            "python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cpu_capability": cpu_capability(), "cpu_count": os.cpu_count(), "git": git, "driver": driver,
            "device": str(self.device), "native_bf16": native_bf16(self.device),
            "auto_precision": resolve_precision("auto", self.device)[0],
            "default_precision": resolve_precision(Protocol().precision, self.device)[0], "dataset": self.dataset,
            "data_root": str(self._data_root()), "peak_bf16_dense_flops": PEAK_BF16_DENSE,
            "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        }
        if self.device.type == "cuda":
            props = torch.cuda.get_device_properties(self.device)
            info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                        compute_capability=f"{props.major}.{props.minor}", gpus=torch.cuda.device_count())
        from importlib.metadata import PackageNotFoundError, version

        for pkg in ("torchvision", "torch-fidelity", "pluggy", "click", "pandas", "scikit-learn", "scipy", "rich"):
            try:
                info[pkg] = version(pkg)
            except PackageNotFoundError:
                info[pkg] = "missing"
        return info

    def _data_root(self) -> Path:
        from ganbench.data import data_root

        return data_root(None)

    def pick_dataset(self) -> str:
        """The GPU protocols' data set where it is on disk (CIFAR-10), else MNIST, else the embedded digits."""
        if self.args.quick:
            return "digits"
        root = self._data_root()
        if any((root / p).exists() for p in ("cifar10-jpeg.tar.gz", "cifar10", "cifar-10-batches-py")):
            return "cifar10"
        if (root / "MNIST" / "raw").is_dir():
            return "mnist"
        return "digits"

    # -- 2. tests -------------------------------------------------------------------------------------------

    def tests(self, rows) -> dict:
        log = self.out / "tests.txt"
        cmd = [self.py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]
        rc, text = run_cmd(cmd, self.left() - 5, log, header=self.label)
        last = [line for line in text.strip().splitlines() if line.strip()][-1:] or [""]
        failed = sorted({line.split()[1] for line in text.splitlines() if line.startswith("FAILED ")})
        return {"command": " ".join(["python"] + cmd[1:]), "exit_code": rc, "summary": last[0], "failed": failed}

    # -- 3. data --------------------------------------------------------------------------------------------

    def data(self, rows) -> dict:
        from ganbench.data import load_dataset

        for _, res, _, _ in self.configs:
            t = time.perf_counter()
            images = load_dataset(self.dataset, "train", res, 3).images
            rows.append({"dataset": self.dataset, "resolution": res, "images": len(images),
                         "seconds": round(time.perf_counter() - t, 1)})
        return {"rows": rows}

    # -- 4. throughput --------------------------------------------------------------------------------------

    def reference_loader(self, res: int, batch: int):
        """The PyTorch DCGAN example's input pipeline: a Dataset of PIL images (from memory, as torchvision's
        CIFAR10 and MNIST classes hold them), per-image Resize, ToTensor and Normalize, a DataLoader with 2
        workers, shuffled."""
        import torchvision.transforms as T
        from PIL import Image

        from ganbench.data import load_dataset

        images = load_dataset(self.dataset, "train", 32, 3).images.permute(0, 2, 3, 1).contiguous().numpy()
        transform = T.Compose([T.Resize(res), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])

        class Images(torch.utils.data.Dataset):
            def __len__(self):
                return len(images)

            def __getitem__(self, i):
                return transform(Image.fromarray(images[i])), 0

        workers = self.args.workers
        return torch.utils.data.DataLoader(Images(), batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                           persistent_workers=workers > 0)

    def throughput(self, rows, loops: dict[str, tuple[str, bool]] | None = None) -> dict:
        """ganbench's step against the example's loop, per config; ``loops``: label -> (precision, CUDA graph)."""
        from throughput import ganbench_loop, reference_loop

        from ganbench.record import RunSpec
        from ganbench.train import Trainer

        loops = loops or {"ganbench fp32": ("fp32", False), "ganbench bf16": ("bf16", False)}
        steps, reps = (2, 1) if self.args.quick else (self.args.steps, 2)
        for name, res, width, batch in self.configs:
            trainers = {}
            for label, (precision, graph) in loops.items():
                proto = self.proto(res, width, batch, precision, f"cuda_graph={str(graph).lower()}")
                trainers[label] = Trainer(RunSpec(proto, "dcgan", 0))
                trainers[label].setup()
            proto = next(iter(trainers.values())).protocol
            G, D = next(iter(trainers.values())).variant.build(proto.arch())
            G, D = G.to(self.device), D.to(self.device)
            loader = self.reference_loader(res, batch)
            runs = {"reference fp32": [], **{label: [] for label in loops}}
            for _ in range(reps):
                for label, trainer in trainers.items():
                    runs[label].append(ganbench_loop(trainer, steps))
                self.sync()
                runs["reference fp32"].append(reference_loop(G, D, loader, steps, proto.z_dim, self.device))
                self.sync()
            ref = statistics.median(runs["reference fp32"])
            for loop, values in runs.items():
                m = statistics.median(values)
                rows.append({"config": name, "resolution": res, "width": width, "batch": batch, "loop": loop,
                             "img_s": round(m, 1), "vs_reference": round(m / ref, 2), "runs": [round(v, 1) for v in values],
                             "steps": steps})
            del loader
        return {"rows": rows, "steps": steps, "reps": reps, "dataset": self.dataset, "workers": self.args.workers}

    def graphs(self, rows) -> dict:
        """The step as one CUDA graph (``cuda_graph = true``) against the same step without, and the example."""
        result = self.throughput(rows, {"ganbench fp32": ("fp32", False), "ganbench fp32 graph": ("fp32", True),
                                        "ganbench bf16 graph": ("bf16", True)})
        return {**result, "note": "cuda_graph=true trains without graphs off CUDA (a CPU dry run times the eager step)"}

    # -- 5. seeds together ----------------------------------------------------------------------------------

    def batched(self, rows) -> dict:
        from ganbench.device import resolve_precision

        # fp32 first (the study's precision), then bf16 where the device has it
        precisions = list(dict.fromkeys(["fp32", resolve_precision("auto", self.device)[0]]))
        ks, steps = ((1, 2), 2) if self.args.quick else ((1, 4, 8, 16), 10)
        for precision in precisions:
            for name, res, width, batch in self.configs:
                self._batched_config(rows, name, res, width, batch, precision, ks, steps)
        return {"rows": rows, "steps": steps, "precisions": precisions,
                "note": "img/s counts every seed's images; 'trainer' is one seed through Trainer.train_step; a row "
                        "with a problem is a stack that cannot train (its seeds would train one after another)"}

    def _batched_config(self, rows, name, res, width, batch, precision, ks, steps) -> None:
        from throughput import ganbench_loop

        from ganbench.batched import SeedStack
        from ganbench.record import RunSpec
        from ganbench.train import Trainer

        proto = self.proto(res, width, batch, precision, "channels_last=false")
        trainer = Trainer(RunSpec(self.proto(res, width, batch, precision), "dcgan", 0))
        trainer.setup()
        base = ganbench_loop(trainer, steps)
        rows.append({"config": name, "resolution": res, "width": width, "batch": batch, "precision": precision,
                     "seeds": 1, "how": "trainer", "img_s": round(base, 1), "vs_trainer": 1.0})
        del trainer
        for k in ks:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            stack = SeedStack(proto, "dcgan", list(range(k)))
            stack.setup()
            if stack.problem:
                rows.append({"config": name, "resolution": res, "width": width, "batch": batch,
                             "precision": precision, "seeds": k, "how": "together", "problem": stack.problem})
                return
            for s in range(2):
                stack.train_step(s)
            self.sync()
            t = time.perf_counter()
            for s in range(2, 2 + steps):
                last = stack.train_step(s)
            last.tolist()
            self.sync()
            ips = k * steps * batch / (time.perf_counter() - t)
            row = {"config": name, "resolution": res, "width": width, "batch": batch, "precision": precision,
                   "seeds": k, "how": "together", "img_s": round(ips, 1), "vs_trainer": round(ips / base, 2)}
            if self.device.type == "cuda":
                row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            rows.append(row)
            del stack

    # -- 6. concurrent runs ---------------------------------------------------------------------------------

    def concurrent(self, rows) -> dict:
        from ganbench.device import device_for_worker, resolve_precision

        precision = resolve_precision("auto", self.device)[0]
        ns, run_s = ((1, 2), 2.0) if self.args.quick else ((1, 4, 8), 8.0)
        configs = self.configs[:1] if self.args.quick else self.configs
        n_gpus = torch.cuda.device_count() if self.device.type == "cuda" else 0
        work = self.out / ".concurrent"
        for name, res, width, batch in configs:
            for n in ns:
                tag = f"{res}px-n{n}"
                ready = work / tag
                ready.mkdir(parents=True, exist_ok=True)
                procs = []
                for i in range(n):
                    spec = {"res": res, "width": width, "batch": batch, "precision": precision, "dataset": self.dataset,
                            "device": self.args.device, "ready_dir": str(ready), "n": n, "index": i, "run_s": run_s,
                            "threads": max(1, (os.cpu_count() or 1) // n), "out": str(ready / f"worker-{i}.json")}
                    env = dict(os.environ)
                    if n_gpus:   # round-robin over the GPUs: each worker sees its own as cuda:0
                        env["CUDA_VISIBLE_DEVICES"] = device_for_worker(i, n_gpus, "cuda").split(":")[1]
                    procs.append(subprocess.Popen([self.py, __file__, "--worker", json.dumps(spec)], cwd=ROOT, env=env,
                                                  stdout=subprocess.DEVNULL, stderr=open(ready / f"worker-{i}.log", "w"),
                                                  start_new_session=True))
                try:
                    for p in procs:
                        p.wait(timeout=max(self.left(), 1))
                finally:
                    for p in procs:
                        if p.poll() is None:
                            with contextlib.suppress(ProcessLookupError):
                                os.killpg(p.pid, signal.SIGKILL)
                            p.wait()
                results = [json.loads(f.read_text()) for f in sorted(ready.glob("worker-*.json"))]
                if len(results) < n:
                    errors = [f.read_text()[-300:] for f in sorted(ready.glob("worker-*.log"))]
                    raise RuntimeError(f"{tag}: {n - len(results)} of {n} workers reported nothing: {errors}")
                total = sum(r["img_s"] for r in results)
                rows.append({"config": name, "resolution": res, "width": width, "batch": batch, "precision": precision,
                             "runs_at_once": n, "img_s_total": round(total, 1), "img_s_per_run": round(total / n, 1),
                             "steps_each": [r["steps"] for r in results], "overlap": all(r["overlap"] for r in results)})
        shutil.rmtree(work, ignore_errors=True)   # the workers' own files; kept only when a stage fails
        base = {r["resolution"]: r["img_s_total"] for r in rows if r["runs_at_once"] == 1}
        for r in rows:
            r["vs_one"] = round(r["img_s_total"] / base[r["resolution"]], 2) if r["resolution"] in base else None
        return {"rows": rows, "run_s": run_s, "precision": precision, "gpus": n_gpus,
                "note": "one process per run, each training for run_s seconds after all are ready; img/s summed"}

    # -- 7. model FLOPs utilisation -------------------------------------------------------------------------

    def flops(self) -> dict[int, dict]:
        from ganbench.arch import ArchSpec, build
        from ganbench.layers import flops_per_image

        out = {}
        for _, res, width, _ in self.configs:
            G, D = build(ArchSpec(resolution=res, channels=3, g_width=width, d_width=width))
            g = flops_per_image(G, torch.randn(2, 100))
            d = flops_per_image(D, torch.randn(2, 3, res, res))
            out[res] = {"g_forward": g, "d_forward": d, "model": 3 * (g + d), "step": 3 * g + 8 * d}
        return out

    def mfu(self, rows) -> dict:
        fl = self.flops()
        sources = [("throughput", "loop", "img_s"), ("graphs", "loop", "img_s"), ("batched", "seeds", "img_s"),
                   ("concurrent", "runs_at_once", "img_s_total")]
        for stage, key, ips_key in sources:
            result = self.results.get(stage) or {}
            for r in result.get("rows", []):
                if r.get(ips_key) is None:   # a stack that could not train (its problem is in its own table)
                    continue
                f = fl[r["resolution"]]
                if stage in ("throughput", "graphs"):
                    what = r["loop"]
                elif stage == "batched":
                    what = f"{r['seeds']} seed(s) {'together' if r['how'] == 'together' else 'through the trainer'} ({r['precision']})"
                else:
                    what = f"{r['runs_at_once']} run(s) at once ({r['precision']})"
                rows.append({"stage": stage, "config": r["config"], "what": what, "img_s": r[ips_key],
                             "model_tflops": round(r[ips_key] * f["model"] / 1e12, 2),
                             "mfu_percent": round(100 * r[ips_key] * f["model"] / PEAK_BF16_DENSE, 3),
                             "step_tflops": round(r[ips_key] * f["step"] / 1e12, 2),
                             "hfu_percent": round(100 * r[ips_key] * f["step"] / PEAK_BF16_DENSE, 3)})
        return {"rows": rows, "flops_per_image": fl, "peak_flops": PEAK_BF16_DENSE,
                "definition": "model FLOPs per image = 3 x (G forward + D forward), ganbench.layers.flops_per_image "
                              "(a multiply-add is 2 FLOPs); MFU = img/s x that / 989 TFLOP/s, the H100/H200 SXM dense "
                              "bf16 peak, for fp32 rows too (their own peak is lower: 67 TFLOP/s fp32, 495 TF32). "
                              "Step FLOPs = 3 x G + 8 x D forward-equivalents, what ganbench's step really does (D on real "
                              "and fake with weight and input gradients, then D again for G with input gradients only); "
                              "the reference loop does 9 x D (it also computes D's weight gradients in its G step), so its "
                              "step figure is understated by one D forward."}

    # -- 8. the study ---------------------------------------------------------------------------------------

    def study_plan(self, budget_s: float) -> dict:
        """Seeds and steps for benchmarks/paper-64.toml (a smoke suite in a dry run) that fit ``budget_s``."""
        from ganbench.device import resolve_precision
        from ganbench.suite import load_suite

        precision = resolve_precision(self.args.study_precision, self.device)[0]
        if self.args.quick:
            variants, suite_args = ["dcgan", "no-bn"], ["--protocol", "smoke", "--variant", "dcgan", "--variant", "no-bn"]
            batch, res, channels = 32, 16, 1
        else:
            suite = load_suite(ROOT / "benchmarks" / "paper-64.toml", [])
            variants, suite_args = list(suite.variants), ["--suite", "benchmarks/paper-64.toml"]
            batch, res, channels = suite.protocols[0].batch_size, suite.protocols[0].resolution, suite.protocols[0].channels
        # Each arm's seeds trained together in one process (``run --together``) when the CUDA tests of the stack
        # at the study's precision passed (they check the grouped records against runs alone on this device; a
        # bf16 failure does not stop an fp32 study) and the batched stage measured a stack of that many seeds
        # faster than one trainer at the study's shape: one start-up, data load and set of FID statistics per arm
        # instead of per seed. (On the H200 a stack paid at 32 px but ran at 0.53x the trainer at 64 px, fp32,
        # where a study planned on the trainer's rate did not reach its one evaluation: check-2.)
        tests = self.results.get("tests") or {}
        stack_failures = [t for t in tests.get("failed", [])
                          if ("together" in t or "seed_stack" in t) and precision in t]
        stack_tested = tests.get("exit_code") in (0, 1) and not stack_failures
        conc = (self.results.get("concurrent") or self.earlier("concurrent")).get("rows", [])
        at_res = [r for r in conc if r["resolution"] == res] or conc
        if at_res:
            best = max(at_res, key=lambda r: r["img_s_total"])
            best_jobs, total_ips = best["runs_at_once"], best["img_s_total"]
        else:
            thr = [r for r in (self.results.get("throughput") or self.earlier("throughput")).get("rows", [])
                   if r["loop"] == f"ganbench {precision}"]
            best_jobs = 2 if self.dry else 8
            total_ips = (thr[-1]["img_s"] if thr else 100.0) * best_jobs / 4
        batched = sorted((r for r in (self.results.get("batched") or {}).get("rows", []) if r.get("img_s")
                          and r["how"] == "together" and r["resolution"] == res and r["precision"] == precision),
                         key=lambda r: r["seeds"])
        # per process: start-up, data, FID statistics, the final evaluation (an estimate from the concurrent
        # stage's workers on the H200: about 10 s each to start and load the data)
        overhead = 20.0 if self.args.quick else 25.0
        cores = os.cpu_count() or 1
        plans = []
        for seeds in (3, 2, 1):
            stacked = [r for r in batched if r["seeds"] >= seeds]
            together = seeds if stack_tested and seeds > 1 and stacked and stacked[0]["vs_trainer"] > 1 else 1
            units = len(variants) * seeds // together          # processes: one per arm, or one per run
            # one process per core: past the concurrent stage's best count the device's total stays flat (on the
            # H200 at 64 px: 22,675 img/s with 4 processes, 22,711 with 8), and more processes at once overlap
            # more of each one's start-up and evaluation with the others' training
            jobs = max(1, min(units, max(cores, best_jobs)))
            waves = math.ceil(units / jobs)
            # the device's measured total, shared evenly; stacks together no faster than one stack of that many
            # seeds alone (at 64 px the stacks of check-2 shared the GPU, each far below its rate alone)
            total = min(total_ips, stacked[0]["img_s"]) if together > 1 else total_ips
            per_seed_ips = total / (jobs * together)
            train_s = budget_s / waves - overhead
            steps = int(train_s * per_seed_ips / batch // 10 * 10)
            steps = min(steps, 20 if self.args.quick else 30000)
            plans.append({"seeds": seeds, "together": together, "runs": len(variants) * seeds, "processes": units,
                          "jobs": jobs, "waves": waves, "steps": steps, "variants": variants,
                          "img_s_per_seed": round(per_seed_ips, 1), "img_s_total": total_ips, "overhead_s": overhead,
                          "precision": precision})
        # 3 seeds (the study's minimum) wherever they train a useful number of steps, else fewer
        plan = next((p for p in plans if p["steps"] >= (10 if self.args.quick else 100)), plans[0])
        plan.update(suite_args=suite_args, resolution=res, channels=channels,
                    cuda_graph=self.graph_pays(res, precision) and plan["together"] == 1)
        return plan

    def graph_pays(self, res: int, precision: str) -> bool:
        """Whether the graphs stage measured the step as a CUDA graph faster than without at this resolution and
        precision, and no CUDA test of the graph failed (the plan's rates stay those measured without graphs)."""
        graphs = (self.results.get("graphs") or {}).get("rows", [])
        rows = {r["loop"]: r["img_s"] for r in graphs if r["resolution"] == res}
        failed = [t for t in (self.results.get("tests") or {}).get("failed", []) if "graph" in t]
        tested = (self.results.get("tests") or {}).get("exit_code") in (0, 1) and not failed
        eager, graph = rows.get(f"ganbench {precision}"), rows.get(f"ganbench {precision} graph")
        return bool(tested and eager and graph and graph > eager and not self.dry)

    def earlier(self, stage: str) -> dict:
        """A stage's result from an earlier check on this device (``--plan-from DIR``), for a check that skips it."""
        path = Path(self.args.plan_from or "") / f"{stage}.json"
        if not self.args.plan_from or not path.exists():
            return {}
        return {**(json.loads(path.read_text()).get("result") or {}), "from": str(path)}

    def extractor_ready(self, res: int, channels: int) -> bool:
        """Whether the study's feature extractor is on disk (InceptionV3's weights, or the data set's domain
        classifier at this resolution, cached by an earlier run), so FID costs no training."""
        from ganbench.data import dataset_spec
        from ganbench.metrics.features import classifier_path, domain_channels, inception_weights

        if inception_weights(""):
            return True
        ds = dataset_spec(self.dataset)
        path = classifier_path(ds.family, res, domain_channels(ds, channels))
        return path.exists() and path.with_suffix(".json").exists()

    def study(self, rows, report_reserve: float) -> dict:
        budget = self.left() - report_reserve - 10
        plan = self.study_plan(budget)
        if plan["steps"] < (5 if self.args.quick else 100):
            return {"plan": plan, "skipped": f"{budget:.0f} s leave under {plan['steps']} steps per run"}
        name = f"smoke-gpu-check-{plan['steps']}" if self.args.quick else f"paper-64-pilot-{plan['steps']}"
        n = 64 if self.args.quick else 2000
        metrics = ["quality", "modes", "stability", "cost"]
        plan["extractor_ready"] = ready = self.extractor_ready(plan["resolution"], plan["channels"])
        if not ready:   # training CIFAR-10's domain classifier (10 epochs on the CPU) would eat the whole budget
            metrics = ["stability", "cost"]
        plan["metrics"] = metrics
        cmd = [self.py, "-m", "ganbench", "run", *plan["suite_args"], "--seeds", str(plan["seeds"]),
               "--jobs", str(plan["jobs"]), "--together", str(plan["together"]), "--device", self.args.device,
               "--results", str(self.out / "records"),
               "--set", f'name="{name}"', "--set", f"steps={plan['steps']}", "--set", f"eval_every={plan['steps']}",
               "--set", f'precision="{plan["precision"]}"', "--set", f"n_eval={n}", "--set", f"n_final={n}",
               "--set", f"n_real={n}", "--set", "metrics=[" + ",".join(f'"{m}"' for m in metrics) + "]"]
        if plan.get("cuda_graph"):
            cmd += ["--set", "cuda_graph=true"]
        if not self.args.quick:
            cmd += ["--set", f'dataset="{self.dataset}"']
        t = time.monotonic()
        rc, _ = run_cmd(cmd, budget, self.out / "study.log", header=self.label)
        statuses = {}
        for summary in sorted((self.out / "records").glob("*/*/seed-*/summary.json")):
            status = json.loads(summary.read_text()).get("status", "?")
            statuses[status] = statuses.get(status, 0) + 1
        return {"plan": plan, "command": _shell(cmd), "exit_code": rc, "stopped_at_deadline": rc == 124,
                "seconds": round(time.monotonic() - t, 1), "runs_by_status": statuses, "protocol_name": name,
                "note": ("a budget-limited pilot of the paper-64 suite (steps, sample counts and metrics cut to fit "
                         "the time), not the paper-64 study" if not self.args.quick else f"{DRY}: smoke protocol")
                + ("" if ready else "; no FID: the extractor is not on disk and training CIFAR-10's domain classifier "
                   "(10 epochs, on the CPU) does not fit: put $GANBENCH_CACHE/classifiers/<family>-<res>px-c3-v*.pt "
                   "and .json there to include quality and modes")}

    def report(self, rows) -> dict:
        records = self.out / "records"
        md = self.out / "report.md"
        if not any(records.glob("*/*/seed-*/summary.json")):
            atomic_write_text(md, (f"# {DRY}\n\n" if self.dry else "") + "No run records to report on.\n")
            return {"command": None, "note": "no records"}
        results = {}
        for fmt, path in (("md", md), ("json", self.out / "report.json")):
            cmd = [self.py, "-m", "ganbench", "report", "--results", str(records), "--format", fmt, "--out", str(path)]
            rc, text = run_cmd(cmd, self.left() - 2)
            results[fmt] = {"command": _shell(cmd), "exit_code": rc, "output": text[-2000:]}
        if self.dry and md.exists():
            atomic_write_text(md, f"# {DRY}\n\n" + md.read_text())
        return results

    # -- the summary ----------------------------------------------------------------------------------------

    def write_summary(self) -> None:
        atomic_write_text(self.summary_path, render_summary(self))

    def run(self) -> None:
        self.dataset = self.pick_dataset()
        self.stage("env", self.env, 60, 1)
        self.stage("tests", self.tests, 150 if not self.args.quick else 120, 20, reserve_s=self.args.study_min_s)
        self.stage("data", self.data, 150, 5, reserve_s=self.args.study_min_s)
        self.stage("throughput", self.throughput, 120 if not self.args.quick else 60, 10, reserve_s=self.args.study_min_s)
        self.stage("graphs", self.graphs, 120 if not self.args.quick else 60, 10, reserve_s=self.args.study_min_s)
        self.stage("batched", self.batched, 120 if not self.args.quick else 60, 10, reserve_s=self.args.study_min_s)
        self.stage("concurrent", self.concurrent, 120 if not self.args.quick else 60, 10, reserve_s=self.args.study_min_s)
        self.stage("mfu", self.mfu, 30, 1)
        report_reserve = 60.0 if not self.args.quick else 40.0
        self.stage("study", lambda rows: self.study(rows, report_reserve), 10**6, 30, reserve_s=report_reserve)
        self.stage("report", self.report, 120, 5)
        write_json(self.out / "check.json", {"label": self.label, "started": self.started, "seconds": round(self.elapsed(), 1),
                                             "deadline_s": self.args.deadline_s, "argv": sys.argv[1:], "stages": self.stages})
        self.write_summary()
        print(f"[{self.elapsed():5.0f} s] done: {self.out} and {self.summary_path}", flush=True)


def _shell(cmd: list[str]) -> str:
    import shlex

    parts = ["python" if c == sys.executable else c for c in cmd]
    return " ".join(shlex.quote(p) for p in parts)


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(no rows)\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


def render_summary(c: Check) -> str:
    tag = f" ({DRY})" if c.dry else ""
    script = "bash benchmarks/gpu_check.sh " + " ".join(sys.argv[1:])
    env = (c.results.get("env") or {})
    lines = [f"# GPU check{tag}", ""]
    if c.dry:
        lines += [f"**{DRY}**: tiny sizes on a CPU to check that the script works; none of these figures is a GPU "
                  "measurement.", ""]
    lines += [f"Produced by `{script.strip()}` (stages and files: the docstring of `benchmarks/gpu_check.py`), "
              f"started {c.started}, {c.elapsed():.0f} s so far, deadline {c.args.deadline_s} s. "
              f"Device: {env.get('gpu', c.args.device)}, driver {env.get('driver')}; Python {env.get('python')}, torch "
              f"{env.get('torch', torch.__version__)}, CUDA "
              f"{env.get('cuda')}, cuDNN {env.get('cudnn')}; commit {env.get('git', '?')[:12]}; data set "
              f"{c.dataset}{' (CIFAR-10 JPEG copy)' if c.dataset == 'cifar10' else ''}. Every figure below is from "
              "that one command; a stage's own file in the output folder holds its raw numbers.", "",
              "| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['stage']} | {s['status']}{': ' + str(s.get('reason') or s.get('error')) if s['status'] != 'done' else ''} "
              f"| {s['seconds']} |" for s in c.stages]
    lines.append("")
    r = c.results
    if r.get("tests"):
        lines += [f"## CUDA tests{tag}", "", f"`{r['tests'].get('command')}`: exit {r['tests'].get('exit_code')}, "
                  f"{r['tests'].get('summary')} (tests.txt).", ""]
    if r.get("throughput"):
        lines += [f"## Training throughput against the PyTorch DCGAN example's loop{tag}", "",
                  "benchmarks/throughput.py's two loops (`ganbench_loop`: `Trainer.train_step`; `reference_loop`: the "
                  "example's loop, fp32, DataLoader with per-image transforms and `.item()` every step), dcgan, 3 "
                  "channels, medians of alternating repetitions (throughput.json):", "",
                  _table(r["throughput"].get("rows", []), ["config", "loop", "img_s", "vs_reference", "runs"])]
    if r.get("graphs"):
        lines += [f"## The step as one CUDA graph (`cuda_graph = true`){tag}", "",
                  "The same loops, the step captured as one CUDA graph (`ganbench/graphs.py`) against the step without "
                  "it and the example's loop, dcgan, medians of alternating repetitions (graphs.json):", "",
                  _table(r["graphs"].get("rows", []), ["config", "loop", "img_s", "vs_reference", "runs"])]
    if r.get("batched"):
        lines += [f"## Seeds trained together (`ganbench.batched`){tag}", "",
                  "K seeds of dcgan as one vmapped computation against one seed through the trainer; img/s counts "
                  "every seed's images (batched.json):", "",
                  _table(r["batched"].get("rows", []), ["config", "precision", "how", "seeds", "img_s", "vs_trainer",
                                                        "problem", "peak_memory_gib"])]
    if r.get("concurrent"):
        lines += [f"## Runs at a time, one process each{tag}", "",
                  "N processes each training dcgan (Trainer.train_step) for the same seconds, started together; "
                  "placed round-robin over the GPUs with `ganbench.device.device_for_worker` (concurrent.json):", "",
                  _table(r["concurrent"].get("rows", []), ["config", "precision", "runs_at_once", "img_s_total",
                                                           "img_s_per_run", "vs_one"])]
    if r.get("mfu"):
        fl = r["mfu"].get("flops_per_image", {})
        lines += [f"## Model FLOPs utilisation{tag}", "", r["mfu"].get("definition", ""), "",
                  "FLOPs per image: " + "; ".join(f"{res} px: G {v['g_forward'] / 1e9:.3f}, D {v['d_forward'] / 1e9:.3f} "
                                                  f"GFLOP forward" for res, v in fl.items()) + " (mfu.json).", "",
                  _table(r["mfu"].get("rows", []), ["stage", "config", "what", "img_s", "model_tflops", "mfu_percent",
                                                    "hfu_percent"])]
    if r.get("study"):
        s = r["study"]
        plan = s.get("plan", {})
        lines += [f"## Study{tag}", "", s.get("note", "") + ".", "",
                  f"Plan from the time left: {plan.get('seeds')} seed(s) x {len(plan.get('variants', []))} variants = "
                  f"{plan.get('runs')} runs ({plan.get('together')} seed(s) of an arm trained together per process), "
                  f"{plan.get('jobs')} processes at a time, {plan.get('steps')} steps each at "
                  f"{plan.get('precision')}{', the step as a CUDA graph' if plan.get('cuda_graph') else ''} "
                  "(study.json).", ""]
        if s.get("command"):
            lines += [f"`{s['command']}`", "", f"Exit {s.get('exit_code')}"
                      f"{' (stopped at the deadline; finished runs are kept, the rest resume with the same command)' if s.get('stopped_at_deadline') else ''}; "
                      f"runs by status: {s.get('runs_by_status')} (study.log, records/).", ""]
        elif s.get("skipped"):
            lines += [f"Not run: {s['skipped']}.", ""]
    if r.get("report"):
        rep = r["report"]
        if rep.get("md"):
            lines += [f"## Report{tag}", "", f"`{rep['md']['command']}` (exit {rep['md']['exit_code']}): report.md; "
                      f"`{rep['json']['command']}`: report.json.", ""]
        else:
            lines += [f"## Report{tag}", "", "No records to report on (report.md says so).", ""]
    return "\n".join(lines) + "\n"


# ---- a worker of the concurrent stage ---------------------------------------------------------------------


def worker(spec: dict) -> None:
    from ganbench.protocol import resolve
    from ganbench.record import RunSpec
    from ganbench.train import STEP_STATS, Trainer

    proto = resolve("smoke", [f'dataset="{spec["dataset"]}"', f"resolution={spec['res']}", "channels=3",
                              f"g_width={spec['width']}", f"d_width={spec['width']}", "z_dim=100",
                              f"batch_size={spec['batch']}", f'device="{spec["device"]}"',
                              f'precision="{spec["precision"]}"', f"threads={spec['threads']}"])
    trainer = Trainer(RunSpec(proto, "dcgan", spec["index"]))
    trainer.setup()
    acc = torch.zeros(len(STEP_STATS), device=trainer.device)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    for s in range(3):
        trainer.train_step(s, acc)
    sync()
    ready = Path(spec["ready_dir"])
    (ready / f"ready-{spec['index']}").touch()
    wait_until = time.monotonic() + 120
    while len(list(ready.glob("ready-*"))) < spec["n"] and time.monotonic() < wait_until:
        time.sleep(0.05)
    overlap = len(list(ready.glob("ready-*"))) >= spec["n"]
    step, t0 = 3, time.perf_counter()
    while True:
        for _ in range(5):
            trainer.train_step(step, acc)
            step += 1
        sync()
        if time.perf_counter() - t0 >= spec["run_s"]:
            break
    elapsed = time.perf_counter() - t0
    acc.tolist()
    write_json(Path(spec["out"]), {"img_s": (step - 3) * proto.batch_size / elapsed, "steps": step - 3,
                                   "seconds": elapsed, "overlap": overlap})


def main() -> None:
    ap = argparse.ArgumentParser(description="ganbench's GPU check (see the module docstring)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run, marked as such")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few steps (for a dry run)")
    ap.add_argument("--out", default="results/published/gpu", help="output folder (summary: the same path + .md)")
    ap.add_argument("--summary", help="the Markdown summary (default: OUT.md, so results/published/gpu.md)")
    ap.add_argument("--deadline-s", type=float, help="stop by this many seconds after the start (default: 540 on "
                                                      "a GPU, 240 with --quick)")
    ap.add_argument("--study-min-s", type=float, help="seconds the earlier stages leave for the study and the report "
                                                       "(default: 200, 60 with --quick)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per throughput measurement on a GPU")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference loop (the example's 2)")
    ap.add_argument("--skip", default="", help="stages to leave out, comma-separated (e.g. throughput,concurrent)")
    ap.add_argument("--plan-from", help="an earlier check's output folder on this device: the study is sized from its "
                                         "concurrent (else throughput) measurements when this check skips them")
    ap.add_argument("--study-precision", default="fp32", choices=["fp32", "bf16", "auto"],
                    help="the study's precision, one for all its runs (default fp32: TF32 convolutions on a GPU, as "
                         "PyTorch's default; on the H200 fp32 trained faster than bf16 at these shapes)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; for a dry run use --device cpu --quick")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.deadline_s is None:
        args.deadline_s = 240.0 if args.quick else 540.0
    if args.study_min_s is None:
        args.study_min_s = 60.0 if args.quick else 200.0
    if args.out and not Path(args.out).is_absolute():
        args.out = str(ROOT / args.out)
    Check(args).run()


if __name__ == "__main__":
    main()
