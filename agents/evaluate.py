r"""``perception-r1 eval``: greedy answers over an env's dataset, the paper's metrics, one table.

    perception-r1 eval --env PerceptionR1/Detection-v0 --agent oracle --limit 50
    perception-r1 eval --env PerceptionR1/Grounding-v0 --model Qwen/Qwen2-VL-2B-Instruct \
        --data refcoco --data-root /data/refer --env-kwargs '{"data_kwargs": {"dataset": "refcoco"}}' \
        --split val --batch-size 32 --device cuda --output runs/eval/refcoco-val

Writes ``predictions.jsonl`` (one line per sample: ids, prompt, answer,
reward, success, the parse in ORIGINAL-image pixels), ``metrics.json``,
``table.md`` and ``report.html`` (every sample drawn, in a browser; written
again from the folder by ``perception-r1 report``) into ``--output``, for
detection also ``detections.json`` and ``ground_truth.json`` (COCO files),
and prints the table. ``--agent`` is
``model`` (default when ``--model`` is given), or a reference: ``oracle``
(perfect answers), ``empty`` (no objects / no text) or ``random``
(``action_space.sample()``). The metric code is torch-free
(:mod:`perception_env.evaluation`); only ``--agent model`` imports torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.eval_outputs import (
    benchmark_label,
    read_run,
    write_training_evaluation,  # noqa: F401  (agents/demo/run.py imports it from here)
)
from agents.progress import progress_bar

log = logging.getLogger("agents.evaluate")

AGENTS = ("model", "oracle", "empty", "random")
# model_type -> the coordinate frame it was trained to answer in
MODEL_FRAMES = {"qwen2_vl": "relative-1000", "qwen2_5_vl": "resized-pixels"}


def model_answerer(
    model: str,
    *,
    device: str = "cpu",
    dtype: str = "auto",
    min_pixels: int,
    max_pixels: int,
    max_new_tokens: int,
    threads: int | str = "auto",
):
    """Greedy decoding with a Qwen2-VL / Qwen2.5-VL checkpoint (a local folder or a hub id).

    The processor resizes images with the env's ``min_pixels``/``max_pixels``,
    so that a Qwen2.5-VL answer's resized-pixel frame is the one the env reads.
    ``threads``: torch's CPU threads (:func:`agents.console.set_threads`).
    """
    import torch

    from agents.console import set_threads
    from agents.engines import make_engine
    from agents.policies.qwen_vl import QwenVLPolicy
    from agents.rollout import Sampling

    if dtype == "auto":
        dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
    policy = QwenVLPolicy.from_pretrained(
        model, device=device, dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels
    )
    model_type = getattr(policy.model.config, "model_type", "")
    set_threads(threads, policy.model)

    # The engine training samples with (docs/rollouts.md): the same greedy tokens as transformers' generate.
    engine = make_engine("auto", policy)
    greedy = Sampling(max_new_tokens=max_new_tokens, do_sample=False)

    def answer(env, indices, observations) -> list[str]:
        with torch.inference_mode():
            rollout = engine.generate(list(observations), 1, greedy)
        return list(rollout.texts)

    answer.model_type = model_type  # type: ignore[attr-defined]
    return answer


def build_env(args: argparse.Namespace):
    """``(env, its gym.make keyword arguments)`` that ``eval``'s options name: ``--env`` with
    ``--env-kwargs``, ``--data`` and its data options, ``--split`` and the pixel bounds."""
    from agents.console import make_env

    kwargs: dict[str, Any] = dict(args.env_kwargs or {})
    if args.data is not None:
        kwargs["source"] = args.data
    data_kwargs = dict(kwargs.get("data_kwargs") or {})
    data_kwargs.update(args.data_kwargs or {})
    if args.data_root is not None:
        data_kwargs["root"] = args.data_root
    if data_kwargs:
        kwargs["data_kwargs"] = data_kwargs
    kwargs.setdefault("split", args.split)
    if args.min_pixels is not None:
        kwargs["min_pixels"] = args.min_pixels
    if args.max_pixels is not None:
        kwargs["max_pixels"] = args.max_pixels
    return make_env(args.env, kwargs), kwargs


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    """The ``eval`` command; returns the run (the metrics.json content).

    The output folder and the model folder are checked before the env's data or the model load."""
    from agents.config import absolute_if_local, check_output_folder
    from perception_env.evaluation import REFERENCE_AGENTS, run_evaluation, write_outputs
    from perception_env.evaluation.report import markdown_table

    agent = args.agent or ("model" if args.model else None)
    if agent is None:
        raise SystemExit("give --model DIR_OR_HUB_ID, or --agent oracle|empty|random")
    if agent == "model" and not args.model:
        raise SystemExit("--agent model needs --model DIR_OR_HUB_ID")
    label = args.label or (Path(str(args.model).rstrip("/")).name if agent == "model" else agent)
    out_dir = (
        Path(args.output)
        if args.output
        else Path("runs")
        / "eval"
        / "__".join([args.env.replace("/", "-"), label.replace("/", "-"), time.strftime("%Y%m%d-%H%M%S")])
    )
    check_output_folder(out_dir, "--output")
    if agent == "model":
        from agents.model_folder import check_model

        check_model(args.model)
    env, env_kwargs = build_env(args)  # a wrong env id or data folder before the model loads
    u = env.unwrapped
    notes: list[str] = []
    max_new_tokens = args.max_new_tokens or u.max_answer_tokens  # the task's (the paper's) longest answer
    if agent == "model":
        answerer = model_answerer(
            args.model,
            device=args.device,
            dtype=args.dtype,
            min_pixels=u.min_pixels,
            max_pixels=u.max_pixels,
            max_new_tokens=max_new_tokens,
            threads=getattr(args, "threads", "auto"),
        )
        expected = MODEL_FRAMES.get(answerer.model_type)
        frame = u.answer_format.frame_name
        if expected and frame != "none" and frame != expected:
            note = (
                f"the model is {answerer.model_type} (answers in {expected}) but the env reads "
                f"{u.answer_format.name!r} answers in {frame}: set answer_format in --env-kwargs"
            )
            log.warning("warning: %s", note)
            notes.append(note)
    else:
        answerer = REFERENCE_AGENTS[agent](args.seed)

    total = len(u.dataset) if args.limit is None else min(args.limit, len(u.dataset))
    with progress_bar(total, f"eval {args.env}", enabled=not args.quiet) as progress:
        result = run_evaluation(
            env, answerer, limit=args.limit, batch_size=args.batch_size, progress=progress
        )
    split = env_kwargs.get("split", "")
    run = {
        "task": result.task,
        "benchmark": args.benchmark or benchmark_label(getattr(u.dataset, "name", "data"), split),
        "agent": label,
        "metrics": result.metrics,
        "env_id": args.env,
        "env_kwargs": env_kwargs,
        "agent_kind": agent,
        "model": absolute_if_local(args.model) if agent == "model" else None,  # found from any folder
        "answer_format": u.answer_format.name,
        "samples": total,
        "max_new_tokens": max_new_tokens if agent == "model" else None,
        "min_pixels": u.min_pixels,
        "max_pixels": u.max_pixels,
        "seconds": result.seconds,
        "notes": notes + result.notes,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    paths = write_outputs(out_dir, run, result.records, env=env)
    print(markdown_table([run]), end="")
    for n in run["notes"]:
        print(f"- {n}")
    print(
        f"wrote {paths['predictions']}, " + ", ".join(p.name for k, p in paths.items() if k != "predictions")
    )
    env.close()
    return run


def run_report(args: argparse.Namespace) -> dict[str, Path]:
    """The ``report`` command: report.html (and a detection's COCO files) written again from a run folder,
    the images from the env rebuilt as metrics.json names it; with ``--compare`` the page of both runs."""
    from agents.config import SetupError
    from agents.console import make_env
    from perception_env.evaluation.report import write_views

    run, records = read_run(args.run_dir)
    compare = read_run(args.compare, "--compare") if args.compare else None
    name = "report.html"
    if compare is not None:
        name = f"compare-{Path(str(args.compare).rstrip('/')).name or 'run'}.html"
    output = Path(args.output) if args.output else Path(args.run_dir) / name
    env = None
    if not args.no_images:
        if not run.get("env_id"):
            raise SetupError(f"RUN_DIR {args.run_dir}: metrics.json names no env_id; use --no-images")
        env = make_env(run["env_id"], dict(run.get("env_kwargs") or {}))
    try:
        paths = write_views(
            output.parent,
            run,
            records,
            env,
            compare=compare,
            report_name=output.name,
            image_side=args.image_side,
        )
    except ValueError as error:  # records of another env, or two runs of different samples
        raise SetupError(f"{args.run_dir}: {error}") from error
    finally:
        if env is not None:
            env.close()
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths


def add_report_parser(subparsers, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command (report.html from an evaluation folder) to ``perception-r1``."""
    from agents.arguments import bounded
    from agents.console import common_options

    p = subparsers.add_parser(
        "report",
        help="write an evaluation's report.html again from its folder, or compare two evaluations",
        description="report.html from RUN_DIR's predictions.jsonl and metrics.json, the images read again "
        "from the env the run names (a detection run also gets detections.json and ground_truth.json). "
        "--compare RUN_B shows both evaluations of the same samples side by side, with each sample's "
        "change in reward.",
        parents=list(parents) or [common_options()],
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder `perception-r1 eval` wrote")
    p.add_argument("--compare", default=None, metavar="RUN_B", help="another evaluation of the same samples")
    p.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="the page (default RUN_DIR/report.html, with --compare RUN_DIR/compare-RUN_B.html)",
    )
    p.add_argument(
        "--image-side",
        type=bounded(int, minimum=16),
        default=None,
        help="longest side of an embedded image in px (default 448; smaller makes a smaller file)",
    )
    p.add_argument(
        "--no-images", action="store_true", help="draw the boxes on blank canvases (no env, no data needed)"
    )
    p.set_defaults(func=run_report)
    return p


def add_eval_parser(subparsers, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``eval`` sub-command to ``perception-r1``'s sub-parsers (``parents``: the options every
    command takes, :func:`agents.console.common_options`, whose ``--quiet`` hides the progress bar)."""
    from agents.arguments import bounded, json_object
    from agents.console import common_options

    p = subparsers.add_parser(
        "eval",
        help="evaluate a model (or oracle/empty/random) with the paper's metrics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=list(parents) or [common_options()],
    )
    p.add_argument("--env", required=True, help="env id, e.g. PerceptionR1/Detection-v0")
    p.add_argument("--model", default=None, help="checkpoint folder or hub id (for --agent model)")
    p.add_argument("--agent", choices=AGENTS, default=None, help="default: model when --model is given")
    p.add_argument(
        "--env-kwargs", type=json_object, default={}, metavar="JSON", help="keyword arguments for gym.make"
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="SOURCE",
        help="data source: synthetic (default), coco, refcoco, pixmo-count, page-ocr, jsonl or hf",
    )
    p.add_argument(
        "--data-root", default=None, metavar="PATH", help="the source's root folder (data_kwargs root)"
    )
    p.add_argument(
        "--data-kwargs", type=json_object, default={}, metavar="JSON", help="more loader arguments"
    )
    p.add_argument(
        "--split", default="test", help="split to evaluate (default test; COCO maps test to val2017)"
    )
    p.add_argument(
        "--limit", type=bounded(int, minimum=1), default=None, help="evaluate only the first N samples"
    )
    p.add_argument(
        "--batch-size", type=bounded(int, minimum=1), default=16, help="observations per generate call"
    )
    p.add_argument(
        "--max-new-tokens",
        type=bounded(int, minimum=1),
        default=None,
        help="default 2048 for detection, else 768 (paper)",
    )
    p.add_argument("--device", default="cpu", help="torch device for --agent model, e.g. cuda")
    p.add_argument(
        "--dtype", default="auto", help="auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16, float16"
    )
    p.add_argument(
        "--min-pixels",
        type=bounded(int, minimum=1),
        default=None,
        help="override the env's (and processor's) min_pixels",
    )
    p.add_argument(
        "--max-pixels",
        type=bounded(int, minimum=1),
        default=None,
        help="override the env's (and processor's) max_pixels",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --agent random")
    p.add_argument("--output", default=None, help="output folder (default runs/eval/{env}__{model}__{time})")
    p.add_argument(
        "--label", default=None, help="row label in the table (default: model folder name or agent)"
    )
    p.add_argument(
        "--benchmark", default=None, help="benchmark label in the table (default: dataset name and split)"
    )
    p.set_defaults(func=run_eval)
    return p


def main(argv: list[str] | None = None) -> None:
    """``perception-r1 eval ...`` / ``report ...`` (``argv`` starts with the command), as the console script
    runs them: the same options, log levels and one-line errors."""
    from agents.console import Parser, common_options, configure_logging, run_command

    def run(argv: list[str]) -> None:
        parser = Parser(prog="perception-r1")
        sub = parser.add_subparsers(dest="command", required=True)
        add_eval_parser(sub, parents=[common_options()])
        add_report_parser(sub, parents=[common_options()])
        args = parser.parse_args(argv)
        configure_logging(quiet=args.quiet, verbose=args.verbose)
        args.func(args)

    run_command(run, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
