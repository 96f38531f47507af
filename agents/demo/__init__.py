"""The main job: offline GRPO that visibly improves a tiny Qwen2-VL's perception on a laptop CPU.

1. build a randomly initialised tiny Qwen2-VL (real architecture, local tokenizer);
2. a supervised warm start on the env's oracle answers, stopped once the held-out metric on the
   validation split enters a band below the ceiling (from random initialisation GRPO collapses:
   docs/learning-on-a-cpu.md);
3. the task's paper metric, greedy, on held-out images (the test split);
4. GRPO on the training split;
5. the metric again: before -> after, per class, what RL's groups looked like, where the TensorBoard run is.

``run_demo(..., control=True)`` then restores the warm start and spends about GRPO's compute on more
supervised steps instead: the control that says whether RL did better than more SFT
(benchmarks/learning.py prints both).

The modules, each importing only the ones after it (pyproject.toml's ``demo-layers``): ``run`` (the run and
the control: torch), ``report`` (the figures and what is printed), ``recipes`` (what each task sets; no torch,
so ``perception-r1 demo --help`` lists the tasks without loading torch). The run's and the report's names
are imported here on first use: the run loads torch, the report gymnasium and the envs, and the command
line's first screen needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agents.demo.recipes import RECIPES, DemoRecipe

if TYPE_CHECKING:
    from agents.demo.report import (
        CLASS_KEYS,
        STALL_HELP,
        STALL_MIN_GAIN,
        metric_value,
        per_class_accuracy,
        per_sample_metric,
        print_reward_table,
        reward_windows,
        stall_reason,
        summarise,
    )
    from agents.demo.run import (
        DemoTrainer,
        TrainingClock,
        WarmStart,
        run_demo,
        sft_control,
        warm_start_to_band,
    )

# agents.demo.run's public names (they load torch); the other names of __all__ but the recipes' are
# agents.demo.report's (gymnasium and the envs): each module is imported on the first use of one of its
# names (PEP 562)
RUN_NAMES = ("DemoTrainer", "TrainingClock", "WarmStart", "run_demo", "sft_control", "warm_start_to_band")


def __getattr__(name: str) -> Any:
    if name in __all__:  # not yet bound: a name of the run or of the report
        import importlib

        module = importlib.import_module(f"agents.demo.{'run' if name in RUN_NAMES else 'report'}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLASS_KEYS",
    "RECIPES",
    "STALL_HELP",
    "STALL_MIN_GAIN",
    "DemoRecipe",
    "metric_value",
    "per_class_accuracy",
    "per_sample_metric",
    "print_reward_table",
    "reward_windows",
    "stall_reason",
    "summarise",
    # RUN_NAMES
    "DemoTrainer",
    "TrainingClock",
    "WarmStart",
    "run_demo",
    "sft_control",
    "warm_start_to_band",
]
