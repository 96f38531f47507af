"""GRPO's loss types by name (TRL 1.16's ``loss_type``), torch-free: the options check them, the loss runs them.

Their maths is in ``agents/grpo/variants.py`` (``policy_term``, ``AGGREGATIONS``).
"""

LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
# the loss types whose policy term is PPO's clipped surrogate (delta and the clip fractions apply to them)
CLIPPED_LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo", "luspo")
# TRL's vllm_importance_sampling_mode: the engine / trainer correction's granularity and bound handling
SAMPLING_CORRECTION_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
