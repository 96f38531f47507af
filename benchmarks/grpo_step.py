"""One GRPO optimizer step, timed by phase, against TRL's GRPOTrainer on the same model, data, G and lengths.

    python benchmarks/grpo_step.py --quick                       # tiny model, small image: ~1 min
    python benchmarks/grpo_step.py --preset small --prompt-tokens 1000 --group-size 8 --max-new-tokens 64
    python benchmarks/grpo_step.py --preset 2b --device cuda --dtype bfloat16     # GPU: Qwen2-VL-2B size

Printed, in one run on one freshly built model (``agents.policies.tiny_model``, random weights):

(a) this project's GRPO step (``Agent.update`` itself, as ``perception-r1 train`` runs it; beta = 0, one
    iteration, no micro-batching) split into generate / score / log-prob forward / backward / optimizer, with generation both ways
    (``prefill_once`` on and off); then per rollout engine (``--engines``, docs/rollouts.md): generation
    time and sampled tokens/s, the whole step, whether the engines drew the same tokens (each engine starts
    from the same weights and seeds), and on CUDA the fraction of the memory-bandwidth limit its decode
    reached: bytes of the language model's weights read per decode step x decode steps / generation time,
    against the GPU's bandwidth (``GPU_BANDWIDTH_GBS`` by device name, or ``--bandwidth-gbs``). Generation
    time includes the prefill, so the fraction is a lower bound;
(b) the training forward+backward, shared-prefix vs per-sequence: time, and peak memory. Memory method:
    each variant runs in a fresh subprocess that loads the model and the saved rollout, frees what it can
    (``gc.collect()``, glibc ``malloc_trim(0)``), resets the kernel's peak-RSS mark
    (``echo 5 > /proc/self/clear_refs``), reads the current RSS, runs forward+backward once and reads the
    peak (``VmHWM`` in /proc/self/status): the difference is the variant's extra peak (activations,
    logits, gradient buffers). Without that file it falls back to ``ru_maxrss`` growth (which hides
    anything below the start-up peak). On CUDA it is ``torch.cuda.max_memory_allocated`` above the
    allocated baseline. (tracemalloc does not see torch.) The time is that of a second forward+backward
    in the same subprocess;
(c) TRL's GRPOTrainer: one step (the second of two, so start-up costs are not counted) on the same model
    folder, the same images and prompts, G, max completion length, temperature and optimiser; the ratio
    TRL / ours.
(d) peak memory of one WHOLE step (generate + score + forward + backward + optimizer), ours vs TRL's, with
    (b)'s method: each side in a fresh subprocess loads the model, runs one warm-up step (so the AdamW
    state, lazy initialisations and the allocator's first growth exist on both sides), then frees what it
    can (``gc.collect()``, glibc ``malloc_trim(0)``), resets the high-water mark, reads the baseline and runs
    one more step; the step's extra peak is high-water mark minus baseline. Same model folder (float32 on
    both sides), same images and prompts, G, max new tokens, beta = 0 (TRL then builds no reference model),
    AdamW, gradients freed after each step on both sides (``zero_grad(set_to_none=True)``). The time of that
    measured step is printed as well (each side in its own process: a cross-check of (c)'s ratio).
Last, on CPU, one line: whether issue 5's CPU targets hold (TRL / ours time >= 3, ours / TRL whole-step peak <= 0.5),
like against like: TRL at its default (activation checkpointing) against ours with every layer checkpointed.

The reward is a toy function of the text (the same for both), since only speed and memory are measured.
Completions of a random model rarely stop early, so both sides sample close to max-new-tokens tokens
(the mean lengths are printed). Timings are wall-clock on whatever the machine is doing: compare rows
of one run, not runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

PROMPT = "How many red squares are in the image? Answer with a number."


def reward_fn(completions, **kwargs) -> list[float]:
    """Toy reward with variance within a group: digits in the answer, mod 3 (TRL's signature)."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(sum(ch.isdigit() for ch in t) % 3) for t in texts]


def image_side(prompt_tokens: int) -> int:
    """Image side (a multiple of 28) giving about ``prompt_tokens`` prompt tokens (one per 28x28 pixels)."""
    text_tokens = 35  # system turn, user header, the question, assistant header
    cells = max(4, prompt_tokens - text_tokens)
    return 28 * max(2, round(cells**0.5))


def make_observations(batch: int, side: int) -> list[dict]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(batch)]
    return [{"image": image, "prompt": PROMPT} for image in images]


DTYPE = "float32"  # set from --dtype: the weights' dtype on both sides (ours and TRL's)


def load_policy(model_dir: str, side: int, **options):
    from agents.policies.qwen_vl import QwenVLPolicy
    from perception_env.frames import DEFAULT_MIN_PIXELS

    # the image's own area, the bounds widened to take it unresized
    pixels = side * side
    return QwenVLPolicy.from_pretrained(
        model_dir,
        dtype=DTYPE,
        min_pixels=min(DEFAULT_MIN_PIXELS, pixels),
        max_pixels=max(pixels, DEFAULT_MIN_PIXELS),
        **options,
    )


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


# peak memory bandwidth (GB/s, 1e9 bytes) by a substring of torch.cuda.get_device_name(); first match wins
GPU_BANDWIDTH_GBS = (
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM (HBM3)
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),  # 40 GB
    ("L40S", 864.0),
    ("RTX 4090", 1008.0),
    ("A10G", 600.0),
    ("L4", 300.0),
)


def gpu_bandwidth_gbs(device_name: str) -> float | None:
    """The GPU's peak memory bandwidth in GB/s from its name (``GPU_BANDWIDTH_GBS``), None if unknown."""
    for fragment, bandwidth in GPU_BANDWIDTH_GBS:
        if fragment.lower() in device_name.lower():
            return bandwidth
    return None


def decode_bytes_per_step(model: torch.nn.Module) -> int:
    """Bytes of weights one decode step reads: the language model's layers and norm, and the LM head.

    The input embedding is only gathered (a few rows), so it is not counted, unless tied to the LM head,
    which reads it whole. The vision tower runs in the prefill only."""
    language_model = model.model.language_model
    counted = {
        id(p): p for name, p in language_model.named_parameters() if not name.startswith("embed_tokens")
    }
    counted[id(model.lm_head.weight)] = model.lm_head.weight
    return sum(p.numel() * p.element_size() for p in counted.values())


def bandwidth_fraction(bytes_per_step: int, steps: int, seconds: float, bandwidth_gbs: float) -> float:
    """Fraction of the bandwidth limit reached: ``bytes_per_step * steps / seconds`` over the bandwidth."""
    return bytes_per_step * steps / seconds / (bandwidth_gbs * 1e9)


# ---------------------------------------------------------------------------------------------------- (a)


def our_step(policy, agent, observations, step: int) -> dict[str, float]:
    """One step as the Trainer runs it: ``agent.sample``, the rewards, then ``agent.update`` itself (the
    tempered log-prob module, the loss, backward, the clipped optimiser step), each phase timed.

    ``logprob_forward`` and ``optimizer`` are the update's own calls of ``agent.logprobs`` and
    ``agent.clip_and_step`` (with an engine that keeps its own weights, the optimizer phase includes sending
    them); ``backward`` is the rest of the update: the loss and its backward."""
    from agents.rollout import RolloutBatch

    device = policy.device
    out: dict[str, float] = {}
    rollout, out["generate"] = timed(lambda: agent.sample(observations, step=step), device)
    start = time.perf_counter()
    rewards = torch.tensor(reward_fn(rollout.texts)).view(len(observations), agent.config.group_size)
    batch = RolloutBatch(step=step, groups=[], rollout=rollout, rewards=rewards)  # the update reads no group
    out["score"] = time.perf_counter() - start
    with phase_clock(agent, device, "logprobs", "clip_and_step") as seconds:
        _, update = timed(lambda: agent.update(batch), device)
    out["logprob_forward"], out["optimizer"] = seconds["logprobs"], seconds["clip_and_step"]
    out["backward"] = update - out["logprob_forward"] - out["optimizer"]
    out["total"] = sum(out.values())
    out["mean_completion_tokens"] = float(rollout.completion_mask.sum(1).float().mean())
    out["prompt_tokens"] = float(rollout.prompt_mask.sum(1).float().mean())
    out["decode_steps"] = float(rollout.completion_ids.shape[1])  # every row decodes until the longest stops
    out["rollout"] = rollout
    return out


@contextlib.contextmanager
def phase_clock(agent, device, *methods: str):
    """Within the block, ``agent``'s ``methods`` add their wall-clock seconds to the yielded dict (by name)."""
    seconds = dict.fromkeys(methods, 0.0)

    def clocked(name, method):
        def run(*args, **kwargs):
            result, elapsed = timed(lambda: method(*args, **kwargs), device)
            seconds[name] += elapsed
            return result

        return run

    for name in methods:
        setattr(agent, name, clocked(name, getattr(agent, name)))
    try:
        yield seconds
    finally:
        for name in methods:
            delattr(agent, name)  # the class's own method again


def make_agent(policy, model_dir: str, args):
    """The GRPO agent a run of these options trains (``agents.build.build_run``), on ``policy``."""
    from agents.build import build_run
    from agents.grpo.config import GRPOConfig

    config = GRPOConfig(
        model=model_dir, group_size=args.group_size, prompts_per_step=args.batch,
        max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, beta=0.0,
        learning_rate=1e-6, num_iterations=1, loss_type="grpo",
        env_kwargs={"difficulty": "easy"},  # the run's env is built, not used: the benchmark's own images
    )  # fmt: skip
    run_dir = tempfile.mkdtemp(prefix="grpo-step-")  # nothing is written there: no step of the Trainer runs
    return build_run(
        config, policy=policy, run_dir=run_dir, progress=False, threads=torch.get_num_threads()
    ).agent


def engine_steps(policy, agent, observations, args) -> dict[str, dict]:
    """Per engine of ``--engines`` (made in turn ``agent.engine``): a warm-up step (captures graphs, fills
    caches), then ``--repeats`` timed steps, the engines taking turns (a loaded machine slows them alike);
    each phase's median. One agent, so one optimiser state in memory.

    Every timed step starts from the same weights (restored) and seeds, so ``same_tokens`` says whether an
    engine drew the first engine's tokens."""
    from agents.engines import make_engine

    start = {k: v.detach().clone() for k, v in policy.model.state_dict().items()}
    own_engine = agent.engine
    results: dict[str, dict] = {}
    engines = {}
    for name in args.engines:
        try:
            engines[name] = make_engine(name, policy)
        except Exception as error:  # e.g. vllm not installed: say why, time the others
            results[name] = {"failed": f"{type(error).__name__}: {error}"[:300]}
            continue
        agent.engine = engines[name]
        our_step(policy, agent, observations, step=0)
    timed_steps: dict[str, list[dict]] = {name: [] for name in engines}
    prefills = []  # the engines' common first part (tokenise, encode the images, prefill the prompts)
    for _ in range(args.repeats):
        prefills.append(timed(lambda: time_prefill(policy, observations), policy.device)[1])
        for name, engine in engines.items():
            policy.model.load_state_dict(start)
            agent.engine = engine
            timed_steps[name].append(our_step(policy, agent, observations, step=1))
    policy.model.load_state_dict(start)
    agent.engine = own_engine
    first_ids = None
    for name, steps in timed_steps.items():
        ids = steps[0]["rollout"].completion_ids
        first_ids = ids if first_ids is None else first_ids
        results[name] = {
            **{key: float(np.median([s[key] for s in steps])) for key in steps[0] if key != "rollout"},
            "same_tokens": torch.equal(ids, first_ids),
            "engine": engines[name].describe(),
            "prefill": float(np.median(prefills)),
        }
    return results


@torch.no_grad()
def time_prefill(policy, observations) -> None:
    """What every engine does before decoding: ``encode_prompts`` and ``prefill`` (images, prompts)."""
    policy.prefill(policy.encode_prompts(observations))


def print_engine_table(results: dict[str, dict], policy, args, trl_seconds: float | None = None) -> None:
    """One line per engine: generation, tokens/s, the whole step, TRL / step, bandwidth fraction (CUDA)."""
    device = policy.device
    bandwidth = args.bandwidth_gbs
    if bandwidth is None and device.type == "cuda":
        bandwidth = gpu_bandwidth_gbs(torch.cuda.get_device_name(device))
    per_step = decode_bytes_per_step(policy.model)
    n = args.batch * args.group_size
    prefill = next((r["prefill"] for r in results.values() if "prefill" in r), float("nan"))
    print(
        f"    encode + prefill (every engine's first part, median of {args.repeats}): {prefill:.3f} s; "
        "decode ~ generate minus that"
    )
    print(
        f"    per engine, medians of {args.repeats} step(s) ({per_step / 1e6:.1f} MB of weights read per decode "
        "step; bandwidth "
        f"{f'{bandwidth:.0f} GB/s' if bandwidth else 'unknown: give --bandwidth-gbs'}):"
    )
    for name, r in results.items():
        if "failed" in r:
            print(f"      {name:12s} failed: {r['failed']}")
            continue
        sampled = n * r["mean_completion_tokens"]
        decode = r["generate"] - r["prefill"]
        line = (
            f"      {name:12s} generate {r['generate']:.3f} s  {sampled / r['generate']:8.0f} sampled tokens/s  "
            f"(decode ~{decode:.3f} s)  step {r['total']:.3f} s"
        )
        if trl_seconds is not None:
            line += f"  TRL / step x{trl_seconds / r['total']:.2f}"
        if bandwidth:
            fraction = bandwidth_fraction(per_step, int(r["decode_steps"]), r["generate"], bandwidth)
            line += f"  bandwidth {100 * fraction:.1f}% of the limit"
        line += f"  same tokens: {'yes' if r['same_tokens'] else 'NO'}  [{r['engine']}]"
        print(line)


# ---------------------------------------------------------------------------------------------------- (b)


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to /proc/self/clear_refs resets VmHWM (peak RSS) to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _release_free_memory() -> None:
    """Collect garbage and return the allocator's free pages (glibc): the baseline RSS is then live data."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Extra peak memory of what runs between ``start()`` and ``stop()`` (bytes), the method of (b) and (d).

    CUDA: ``max_memory_allocated`` above the allocated baseline. CPU on Linux: reset ``VmHWM`` (peak RSS),
    then ``VmHWM`` minus the RSS at the start. Elsewhere: ``ru_maxrss`` growth (hides what stays below the
    start-up peak).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.method = "cuda" if device.type == "cuda" else ("vmhwm" if _reset_peak_rss() else "ru_maxrss")
        self.base = 0

    def start(self) -> None:
        _release_free_memory()
        if self.method == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        elif self.method == "vmhwm":
            _reset_peak_rss()
            self.base = _proc_status_kib("VmRSS") * 1024
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    def stop(self) -> int:
        if self.method == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        if self.method == "vmhwm":
            return _proc_status_kib("VmHWM") * 1024 - self.base
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.base


def child_forward_backward(args) -> None:
    """Subprocess body: peak memory and time of one variant's forward+backward (prints one JSON line)."""
    torch.set_num_threads(args.threads)
    side = image_side(args.prompt_tokens)
    policy = load_policy(args.model_dir, side)
    rollout = torch.load(args.rollout_file, weights_only=False).to(args.device)
    policy.model.to(args.device).train()
    device = policy.device
    shared = args._child == "shared"

    def step():
        logp = policy.completion_logprobs(rollout, shared_prefix=shared)
        (logp.sum() / rollout.completion_mask.sum()).backward()
        policy.model.zero_grad(set_to_none=False)  # keep grad buffers: they are part of the real peak

    meter = PeakMemory(device)
    meter.start()
    step()
    peak = meter.stop()
    _, seconds = timed(step, device)
    print(json.dumps({"seconds": seconds, "peak_bytes": peak}))


def run_child(variant: str, model_dir: str, args, *extra: str) -> dict:
    """Run this script as a subprocess in ``variant`` mode; its last stdout line is a JSON object."""
    cmd = [
        sys.executable, __file__, "--_child", variant, "--model-dir", model_dir,
        "--prompt-tokens", str(args.prompt_tokens), "--threads", str(args.threads), "--device", args.device,
        "--batch", str(args.batch), "--group-size", str(args.group_size),
        "--max-new-tokens", str(args.max_new_tokens), "--dtype", args.dtype, *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} subprocess failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def forward_backward_variants(model_dir: str, rollout, args) -> dict[str, dict]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rollout.pt")
        torch.save(rollout.to("cpu"), path)
        for variant in ("shared", "per_sequence"):
            try:
                results[variant] = run_child(variant, model_dir, args, "--rollout-file", path)
            except RuntimeError as error:  # e.g. out of memory at GPU sizes: say so, keep the others
                results[variant] = {"failed": str(error).strip().splitlines()[-1][:200]}
    return results


# ---------------------------------------------------------------------------------------------------- (c)


def trl_step(
    model_dir: str, observations, args, meter: PeakMemory | None = None, checkpointing: bool = True
) -> dict[str, float]:
    """Two GRPOTrainer steps on the same model folder and data; the second step's time.

    ``checkpointing``: TRL's own default (True) recomputes activations in backward; False keeps them.
    With ``meter``: also the second step's extra peak memory (``peak_bytes``) and its baseline.
    """
    from datasets import Dataset
    from PIL import Image
    from transformers import TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    side = image_side(args.prompt_tokens)
    policy = load_policy(model_dir, side)  # same weights and processor (min/max pixels) as ours
    rows = [
        {"prompt": [{"role": "user", "content": o["prompt"]}], "image": Image.fromarray(o["image"])}
        for o in observations
    ]
    dataset = Dataset.from_list(rows * 4)
    times: list[float] = []
    memory: dict[str, float] = {}

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args_, state, *a, **k):
            if meter is not None and state.global_step == 1:  # the second step: after the warm-up step
                meter.start()
            self.start = time.perf_counter()

        def on_step_end(self, args_, state, *a, **k):
            times.append(time.perf_counter() - self.start)
            if meter is not None and state.global_step == 2:  # incremented before on_step_end
                memory["peak_bytes"] = meter.stop()
                memory["base_bytes"] = meter.base

    with tempfile.TemporaryDirectory() as tmp:
        config = TRLConfig(
            output_dir=tmp, use_cpu=args.device == "cpu", bf16=False, fp16=False,
            per_device_train_batch_size=args.batch * args.group_size, num_generations=args.group_size,
            gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1,
            max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
            beta=0.0, loss_type="grpo", learning_rate=1e-6, max_grad_norm=1.0, max_steps=2,
            report_to=[], logging_strategy="no", save_strategy="no", disable_tqdm=True,
            remove_unused_columns=False, shuffle_dataset=False, seed=0, dataloader_num_workers=0,
            gradient_checkpointing=checkpointing,
        )  # fmt: skip
        assert config.beta == 0.0  # no reference model: the same weights in memory as ours
        trainer = GRPOTrainer(
            model=policy.model,
            reward_funcs=reward_fn,
            args=config,
            train_dataset=dataset,
            processing_class=policy.processor,
            callbacks=[StepTimer()],
        )
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            trainer.train()
        assert trainer.ref_model is None
    return {"step": times[-1], "first_step": times[0], **memory}


# ---------------------------------------------------------------------------------------------------- (d)


def child_whole_step(args) -> None:
    """Subprocess body: one whole GRPO step's extra peak memory and time, ours or TRL's (one JSON line)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    side = image_side(args.prompt_tokens)
    observations = make_observations(args.batch, side)
    meter = PeakMemory(device)
    if args._child.startswith("step_trl"):
        out = trl_step(args.model_dir, observations, args, meter, checkpointing=args._child == "step_trl")
        print(json.dumps({"seconds": out["step"], "peak_bytes": out["peak_bytes"],
                          "base_bytes": out["base_bytes"], "method": meter.method}))  # fmt: skip
        return
    checkpointing = {"step_ours_vision_ckpt": "vision", "step_ours_full_ckpt": True}.get(args._child, False)
    policy = load_policy(args.model_dir, side, activation_checkpointing=checkpointing)
    policy.model.to(device)
    agent = make_agent(policy, args.model_dir, args)
    our_step(policy, agent, observations, step=0)  # warm-up, as in (a)
    meter.start()
    ours = our_step(policy, agent, observations, step=1)
    peak = meter.stop()
    print(json.dumps({"seconds": ours["total"], "peak_bytes": peak, "base_bytes": meter.base,
                      "method": meter.method}))  # fmt: skip


# ---------------------------------------------------------------------------------------------------- main


def _release_device_memory(device: torch.device) -> None:
    """Give this process's freed CUDA blocks back, so that a measuring subprocess has the whole GPU."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# C901 kept: a measurement's steps in the order they run (build, time each engine, print)
def run_preset(preset: str, args) -> None:  # noqa: C901
    from agents.policies.tiny_model import build_tiny_model

    device = torch.device(args.device)
    side = image_side(args.prompt_tokens)
    observations = make_observations(args.batch, side)
    with tempfile.TemporaryDirectory() as tmp:
        saved_dtype = getattr(torch, args.dtype)  # a 2B model in bfloat16 is 4.4 GB on disk, not 8.8
        model_dir = str(
            build_tiny_model(Path(tmp) / preset, arch=args.arch, preset=preset, seed=0, dtype=saved_dtype)
        )
        policy = load_policy(model_dir, side)
        policy.model.to(device)
        n_params = policy.num_parameters()
        agent = make_agent(policy, model_dir, args)
        print(
            f"\n=== preset {preset} ({n_params / 1e6:.2f}M params, {args.arch}, {args.dtype} weights), "
            f"B={args.batch} observations x "
            f"G={args.group_size}, image {side}x{side}, max {args.max_new_tokens} new tokens, "
            f"{torch.get_num_threads()} thread(s), {device} ==="
        )

        our_step(policy, agent, observations, step=0)  # warm-up (allocator, lazy inits)
        ours = our_step(policy, agent, observations, step=1)
        ours.pop("rollout")
        print(f"rollout engine: {agent.engine.describe()}")
        print(
            f"prompt tokens {ours['prompt_tokens']:.0f}, "
            f"mean completion tokens {ours['mean_completion_tokens']:.1f}"
        )
        phases = ("generate", "score", "logprob_forward", "backward", "optimizer", "total")
        print("(a) our GRPO step [s]: " + "  ".join(f"{k} {ours[k]:.3f}" for k in phases))
        n = args.batch * args.group_size
        sampled = n * ours["mean_completion_tokens"]
        trained = n * (ours["prompt_tokens"] + ours["mean_completion_tokens"])
        print(
            f"    throughput: {sampled / ours['generate']:.0f} sampled tokens/s; "
            f"{trained / (ours['logprob_forward'] + ours['backward']):.0f} trained tokens/s (forward+backward, "
            f"prompt+completion as a per-sequence trainer counts them); {n / ours['total']:.2f} answers/s"
        )
        if device.type == "cuda":
            print(
                f"    peak CUDA memory in this process so far: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB "
                f"on {torch.cuda.get_device_name()}"
            )

        plain = load_policy(model_dir, side, prefill_once=False)
        plain.model.load_state_dict(policy.model.state_dict())
        plain.model.to(device)
        gen = {}
        for name, pol in (("prefill_once", policy), ("transformers num_return_sequences", plain)):
            _, gen[name] = timed(
                lambda p=pol: p.generate(observations, num_samples=args.group_size, temperature=1.0,
                                         max_new_tokens=args.max_new_tokens, generator_seed=2), device
            )  # fmt: skip
        print("    generate only [s]: " + "  ".join(f"{k} {v:.3f}" for k, v in gen.items()))
        del plain, pol  # the engines below need the memory
        _release_device_memory(device)
        engines = engine_steps(policy, agent, observations, args)
        print_engine_table(engines, policy, args)
        if device.type != "cuda":
            print("    GPU figures: not yet measured here (run with --device cuda)")

        rollout = policy.generate(
            observations, num_samples=args.group_size, max_new_tokens=args.max_new_tokens, generator_seed=3
        )
        rollout = rollout.to("cpu")
        del policy, agent  # the subprocesses below measure memory on the same device
        _release_device_memory(device)
        variants = forward_backward_variants(model_dir, rollout, args)
        mem_name = "peak CUDA alloc" if device.type == "cuda" else "peak RSS delta"
        print(
            f"(b) training forward+backward ({rollout.completion_ids.shape[0]} completions x "
            f"{rollout.completion_ids.shape[1]} tokens):"
        )
        for name, r in variants.items():
            if "failed" in r:
                print(f"    {name:13s} failed: {r['failed']}")
            else:
                print(f"    {name:13s} {r['seconds']:.3f} s   {mem_name} {r['peak_bytes'] / 2**20:.1f} MiB")
        if all("seconds" in r for r in variants.values()):
            speedup = variants["per_sequence"]["seconds"] / variants["shared"]["seconds"]
            print(f"    shared-prefix speed-up x{speedup:.2f}")

        if args.skip_trl:
            return
        try:
            trl = trl_step(model_dir, observations, args)
        except Exception as error:  # report why, keep the rest of the output
            print(f"(c) TRL GRPOTrainer: failed: {type(error).__name__}: {error}")
            return
        _release_device_memory(device)
        time_ratio = trl["step"] / ours["total"]
        print(
            f"(c) TRL GRPOTrainer step [s]: {trl['step']:.3f} (first step {trl['first_step']:.3f}); "
            f"ours {ours['total']:.3f}; TRL / ours = x{time_ratio:.2f}"
        )
        print(
            "    TRL / our step per engine: "
            + "  ".join(f"{k} x{trl['step'] / r['total']:.2f}" for k, r in engines.items() if "total" in r)
        )

        labels = {
            "ours": "ours",
            "ours_vision_ckpt": "ours, vision tower checkpointed",
            "ours_full_ckpt": "ours, every layer checkpointed",
            "trl": "TRL GRPOTrainer (its default: activation checkpointing)",
            "trl_nockpt": "TRL GRPOTrainer, no checkpointing",
        }
        if args.skip_trl_nockpt:
            del labels["trl_nockpt"]
        whole = {}
        for name in labels:
            try:
                whole[name] = run_child(f"step_{name}", model_dir, args)
            except Exception as error:  # e.g. out of memory: say so, measure the others
                print(f"(d) {labels[name]}: failed: {str(error).strip().splitlines()[-1][:300]}")
        if "ours" not in whole or "trl" not in whole:
            return
        mem_ratio = whole["ours"]["peak_bytes"] / max(whole["trl"]["peak_bytes"], 1)
        print(
            f"(d) whole step (generate+score+forward+backward+optimizer), each in its own process, "
            f"{mem_name} above the post-warm-up baseline:"
        )
        for name, r in whole.items():
            print(
                f"    {labels[name]:57s} {r['peak_bytes'] / 2**20:9.1f} MiB  (baseline "
                f"{r['base_bytes'] / 2**20:.1f} MiB)   step {r['seconds']:.3f} s"
            )
        print(
            f"    ours / TRL peak memory = x{mem_ratio:.2f}; in these processes TRL / ours time = "
            f"x{whole['trl']['seconds'] / whole['ours']['seconds']:.2f}"
        )
        for name in ("ours_vision_ckpt", "ours_full_ckpt"):
            if name in whole:
                print(
                    f"    {labels[name]}: ours / TRL peak memory = "
                    f"x{whole[name]['peak_bytes'] / max(whole['trl']['peak_bytes'], 1):.2f}, "
                    f"TRL / ours time = x{whole['trl']['seconds'] / whole[name]['seconds']:.2f}"
                )
        if device.type != "cpu":
            return
        # like against like: TRL checkpoints activations by default, so ours does too for the target
        if "ours_full_ckpt" in whole:
            mem_ratio = whole["ours_full_ckpt"]["peak_bytes"] / max(whole["trl"]["peak_bytes"], 1)
            time_ratio = min(time_ratio, whole["trl"]["seconds"] / whole["ours_full_ckpt"]["seconds"])
        speed_ok, memory_ok = time_ratio >= 3.0, mem_ratio <= 0.5
        verdict = "MET" if speed_ok and memory_ok else "NOT MET"
        print(
            f"CPU TARGETS {verdict}: speed TRL / ours x{time_ratio:.2f} (target >= 3: "
            f"{'met' if speed_ok else 'not met'}); peak memory ours / TRL x{mem_ratio:.2f} (target <= 0.5: "
            f"{'met' if memory_ok else 'not met'})"
        )


def engine_list(text: str) -> list[str]:
    """``--engines``: comma-separated names of rollout engines (``auto`` excluded: it is one of the others)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ("transformers", "fast", "vllm")]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"--engines takes names among transformers, fast, vllm; got {text!r}"
            + (f" ({', '.join(unknown)} unknown)" if unknown else "")
        )
    return names


def main(argv=None) -> None:
    from agents.presets import ARCHS, PRESETS, presets_help

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        default="both",
        choices=(*PRESETS, "both"),
        help=f"model size, random weights: {presets_help()}, or both (tiny, then small); 2b / 3b on a GPU",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="weights' dtype on both sides (bfloat16 for the GPU sizes)",
    )
    parser.add_argument("--arch", default="qwen2-vl", choices=ARCHS)
    parser.add_argument(
        "--prompt-tokens", type=int, default=1000, help="about this many prompt tokens (sets the image size)"
    )
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2, help="observations per step")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument(
        "--skip-trl-nockpt",
        action="store_true",
        help="do not measure TRL without activation checkpointing (slow, large on CPU)",
    )
    parser.add_argument(
        "--engines",
        type=engine_list,
        default=["transformers", "fast"],
        help="comma-separated rollout engines to time side by side (docs/rollouts.md): transformers, fast, vllm",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed steps per engine (the median is printed)"
    )
    parser.add_argument(
        "--bandwidth-gbs",
        type=float,
        default=None,
        help="the GPU's memory bandwidth in GB/s, for the bandwidth fraction (default: by the GPU's name)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny preset, ~200 prompt tokens, 16 new tokens")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rollout-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    global DTYPE
    DTYPE = args.dtype
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if args._child and args._child.startswith("step_"):
        child_whole_step(args)
        return
    if args._child:
        child_forward_backward(args)
        return
    if args.quick:
        args.preset, args.prompt_tokens, args.max_new_tokens = "tiny", 200, 16
    torch.set_num_threads(args.threads)
    presets = ("tiny", "small") if args.preset == "both" else (args.preset,)
    for preset in presets:
        run_preset(preset, args)


if __name__ == "__main__":
    main()
