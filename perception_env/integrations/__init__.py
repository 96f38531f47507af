"""The envs' rewards and data for other trainers: TRL, verl, EasyR1 (torch-free, like the rest of the package).

* TRL's ``GRPOTrainer``: :func:`trl_reward` (a reward function built from an env id and its kwargs) and
  :func:`trl_dataset` (the env's data as a ``datasets.Dataset`` in TRL's vision-language layout).
* verl / EasyR1: :func:`verl.compute_score` (the function their reward managers call) and
  :func:`verl.export_parquet` (the env's data as a parquet file in their layout).

Both score with the env's own reward (``env.step`` on the same text gives the same number). ``datasets`` (the
``hf`` extra) is needed for the data, not for the rewards. What the trainers' decoding loses (Qwen2-VL's box
tokens) and the image frame their processors must share with the env: :mod:`perception_env.integrations.common`.
"""

from perception_env.integrations.ground_truth import ground_truth, score_ground_truth
from perception_env.integrations.trl import completion_text, trl_dataset, trl_reward
from perception_env.integrations.verl import compute_score, easyr1_compute_score, export_parquet

__all__ = [
    "completion_text",
    "compute_score",
    "easyr1_compute_score",
    "export_parquet",
    "ground_truth",
    "score_ground_truth",
    "trl_dataset",
    "trl_reward",
]
