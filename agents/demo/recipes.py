"""What the demo sets per task: :class:`DemoRecipe` and ``RECIPES`` (the measured choices:
benchmarks/RESULTS.md). Pure data and the envs they name: no torch, so the command line lists the tasks
without loading a model library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the command line reads RECIPES for its --task choices (its --help
    # in a few hundredths of a second), without gymnasium and the envs
    import gymnasium as gym

    from agents.grpo.config import GRPOConfig


@dataclass(frozen=True)
class DemoRecipe:
    """Everything the demo sets, per task (measured choices: benchmarks/RESULTS.md)."""

    env_id: str
    env_kwargs: dict
    metric: str  # the paper's held-out metric: a key of evaluate()["metrics"] (a fraction)
    metric_label: str  # as printed
    sft_band: tuple[float, float]  # stop the warm start once the validation metric lies in [lo, hi]
    sft_max_steps: int
    grpo_steps: int
    grpo_learning_rate: float
    higher_is_better: bool = True  # False for OCR's edit distance
    preset: str = "tiny"  # a name of agents/presets.py PRESETS
    rope_theta: float | None = None  # the text model's rotary base; None: the preset's
    # the processor's pixel normalisation (one value for the 3 channels); None: the released CLIP values
    image_mean: float | None = None
    image_std: float | None = None
    sft_batch_size: int = 16
    sft_learning_rate: float = 1e-3
    sft_chunk: int = 25  # warm-start steps between validation checks (halved to land inside the band)
    sft_check_samples: int = 100
    grpo_lr_scheduler: str = "cosine"  # decays to 0: a constant rate wobbles once the task is solved
    grpo_beta: float = 0.0  # KL to the warm start (the paper: 0.04); 0 skips the reference model
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 4
    eval_samples: int = 200
    # the SFT control's steps: about the CPU time of the GRPO phase (both times are printed beside it)
    control_sft_steps: int = 0
    # supervised phases (warm start, control) see only the first N training images (0: all of them);
    # GRPO always samples the whole training split
    sft_demonstrations: int = 0
    # the order supervised answers list an image's objects (agents/sft.py): "random" per image, as real
    # annotation files; "sorted" (reading order) for the comparison with one fixed order
    target_order: str = "random"

    def make_env(self, split: str, size: int = 0) -> gym.Env:
        """The recipe's env on ``split``; ``size`` > 0 keeps the split's first ``size`` samples."""
        import gymnasium as gym

        import perception_env  # noqa: F401  (registers the envs)

        kwargs = dict(self.env_kwargs)
        if size:
            kwargs["data_kwargs"] = {**kwargs.get("data_kwargs", {}), "size": size}
        return gym.make(self.env_id, **kwargs, split=split)

    def grpo_config(self, model: str, out_dir: Path, seed: int, steps: int | None = None) -> GRPOConfig:
        from agents.grpo.config import GRPOConfig

        total = steps or self.grpo_steps
        return GRPOConfig(
            env_id=self.env_id,
            env_kwargs=self.env_kwargs,
            model=model,
            output_dir=str(out_dir),
            run_name=f"grpo-seed{seed}",
            seed=seed,
            total_steps=total,
            prompts_per_step=self.prompts_per_step,
            group_size=self.group_size,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=self.max_new_tokens,
            learning_rate=self.grpo_learning_rate,
            lr_scheduler=self.grpo_lr_scheduler,
            beta=self.grpo_beta,
            max_grad_norm=1.0,
            save_every=max(1, total // 4),
            log_samples_every=50,
        )

    def gain(self, before: float, after: float) -> float:
        """Improvement in points (x100), positive when the metric got better whatever its direction."""
        return 100.0 * (after - before) * (1 if self.higher_is_better else -1)

    def band_position(self, value: float) -> int:
        """-1 short of the band, 0 inside it, +1 past it (in the direction the metric improves)."""
        lo, hi = self.sft_band
        if lo <= value <= hi:
            return 0
        short = value < lo if self.higher_is_better else value > hi
        return -1 if short else 1


RECIPES = {
    # "How many objects are in the image?" on a 4x4 grid, one object per vision token: a 0.26M model
    # learns it in a minute of supervision (shape-specific counting takes it thousands of steps), so a
    # warm start stopped at ~40% leaves GRPO a policy that can perceive but answers badly. Counting every
    # object needs no position: with the released rope_theta the image tokens are a bag, and GRPO takes
    # seed 0 from 41% to 100%; with the tiny preset's theta 10 it stalled (38.5% -> 40.5%,
    # docs/learning-on-a-cpu.md).
    "counting": DemoRecipe(
        env_id="PerceptionR1/Counting-v0",
        env_kwargs={"difficulty": {"base": "easy", "count_query": "all"}, "answer_format": "number"},
        metric="accuracy",
        metric_label="accuracy",
        sft_band=(0.35, 0.6),
        sft_max_steps=3000,
        grpo_steps=600,
        grpo_learning_rate=3e-4,
        rope_theta=1_000_000.0,
        control_sft_steps=700,
    ),
    # One object per image ("the red circle"), centred in one of 16 grid cells; answer in Qwen2-VL box
    # tokens. Positions reach the language model through M-RoPE: the tiny preset's rope_theta (10) keeps
    # the image rows and columns apart. IoU^2 plus a format term keeps the answer's shape while RL moves
    # the box; Acc@0.5 as RefCOCO.
    "grounding": DemoRecipe(
        env_id="PerceptionR1/Grounding-v0",
        env_kwargs={
            "difficulty": {"base": "easy", "num_objects": [1, 1]},
            "reward_config": {"power": 2.0, "format_weight": 0.2},
        },
        metric="acc@0.5",
        metric_label="Acc@0.5",
        sft_band=(0.4, 0.7),
        sft_max_steps=3000,
        sft_check_samples=200,
        grpo_steps=300,
        grpo_learning_rate=3e-4,
        max_new_tokens=32,  # the longest oracle answer: 26 tokens
        control_sft_steps=1000,
    ),
    # The simplest detection: one circle per image, in one of 16 grid cells, named and boxed; the paper's
    # DETR-style reward (format + F1@0.5 + label accuracy + IoU over Hungarian matches) and COCO AP
    # (pycocotools, every box scored 1.0, as the paper evaluates). With 1-2 objects of 3 shapes the tiny
    # model localises one object but not two and confuses shapes: GRPO then gains +7 to +17 AP
    # (docs/learning-on-a-cpu.md). The scene space is small (236 scenes in all: colour and box), so
    # validation keeps two of the ten scene buckets, as test does: with one it held 22 scenes and its AP
    # at the warm start's stop missed the test's by 20.4 points on average over seeds 0-4; with two (41
    # scenes) by 10.4 (benchmarks/RESULTS.md).
    "detection": DemoRecipe(
        env_id="PerceptionR1/Detection-v0",
        env_kwargs={
            "difficulty": {"base": "easy", "num_objects": [1, 1], "shapes": ["circle"]},
            "data_kwargs": {"val_buckets": 2},
            "answer_format": "qwen2-vl",
        },
        metric="AP",
        metric_label="COCO AP",
        sft_band=(0.2, 0.5),
        sft_max_steps=4000,
        sft_chunk=50,
        sft_check_samples=200,
        grpo_steps=300,
        grpo_learning_rate=3e-4,
        max_new_tokens=26,  # one object: 23 tokens
        control_sft_steps=1000,
    ),
    # Many unordered objects (the paper's argument for matched rewards), every one named and boxed; the
    # paper's Hungarian-matched reward and COCO AP. On a 4x4 grid of 2-5 objects of 22-26 px supervision
    # stayed at <= 5% AP (12% with mini) after 1,000 steps, so the data are simpler, not the question:
    # a 3x3 grid on 84 px (9 vision tokens, shorter answers), 3-5 objects (3.96 per test image) of 2
    # classes, all 24 px so each cell has one possible box. Supervision lists them in reading order: in
    # a random order per image the probe reached 8% AP at 600 steps (reading order 18%) and repeated boxes.
    # Still experimental: GRPO at 3e-4 gained +5.9 AP on seed 0 in 400 steps (18.0% -> 23.9%, about 600 s
    # of CPU for the demo), +2.3 and +6.7 on seeds 1 and 2; at 1e-3 it collapsed; short of +20
    # (docs/learning-on-a-cpu.md).
    "detection-multi": DemoRecipe(
        env_id="PerceptionR1/Detection-v0",
        env_kwargs={
            "difficulty": {
                "base": "easy",
                "image_size": 84,
                "grid": 3,
                "num_objects": [3, 5],
                "object_size": [24, 24],
                "shapes": ["circle", "square"],
            },
            "answer_format": "qwen2-vl",
        },
        metric="AP",
        metric_label="COCO AP",
        sft_band=(0.2, 0.4),
        sft_max_steps=3000,  # seed 0 entered the band at 700 steps
        sft_chunk=100,
        sft_check_samples=200,
        grpo_steps=400,
        grpo_learning_rate=3e-4,
        max_new_tokens=116,  # the longest oracle answer (five objects, labels alternating): 111 tokens
        control_sft_steps=1000,
        target_order="sorted",
    ),
    # PixMo-Count as the paper trains it: point to every object (2-5 per image, one per grid cell), the
    # count is the number of points; reward = count ratio x (1 - mean Hungarian-matched distance / sqrt 2),
    # metric = exact-count accuracy. Supervision lists the points in a random order per image. Warm
    # starts stop just after SFT's jump (30-45% test accuracy); GRPO: +44 to +70 points on seeds 0-2.
    "counting-points": DemoRecipe(
        env_id="PerceptionR1/Counting-v0",
        env_kwargs={
            "difficulty": {
                "base": "easy",
                "count_query": "all",
                "num_objects": [2, 5],
                "count_range": [2, 5],
            },
            "answer_format": "qwen2-vl-points",
        },
        metric="accuracy",
        metric_label="count accuracy",
        sft_band=(0.35, 0.6),
        sft_max_steps=3000,
        sft_chunk=50,
        sft_check_samples=200,
        grpo_steps=300,
        grpo_learning_rate=3e-4,
        max_new_tokens=48,  # five points: 45 tokens
        control_sft_steps=1000,
    ),
    # A word of 1-4 letters on a 168x56 page, one letter centred in each 28-px cell (one vision token
    # each), the word starting at a random cell of a 6x2 grid; the paper's PageOCR reward, 1 - normalised
    # edit distance, and its metric. The processor normalises by the page's grey (0.92, std 0.3): with
    # CLIP's values SFT stayed at 0-1% exact words for 2,250 steps (docs/learning-on-a-cpu.md).
    # A 112-px page left 4-letter words one start column, so the test's 4-letter words were unseen.
    # Edit-distance rewards give partial credit, and GRPO at beta 0 made half the groups unanimous on
    # a wrong word; the paper's beta 0.04 and 2,000 steps keep it exploring (about 6 CPU minutes).
    "ocr": DemoRecipe(
        env_id="PerceptionR1/OCR-v0",
        env_kwargs={"difficulty": {"base": "easy", "letter_cell": 28, "page_size": [168, 56]}},
        metric="edit_distance",
        metric_label="edit distance",
        higher_is_better=False,
        sft_band=(0.35, 0.6),
        sft_max_steps=3000,
        sft_check_samples=200,
        grpo_steps=2000,
        grpo_beta=0.04,  # the paper's KL: with beta 0 seed 2 collapsed onto wrong answers (+13 to +17)
        grpo_learning_rate=3e-4,
        max_new_tokens=8,
        image_mean=0.92,
        image_std=0.3,
        control_sft_steps=3000,
    ),
}
