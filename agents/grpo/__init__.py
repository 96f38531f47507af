"""GRPO (Shao et al., 2024) as Perception-R1 runs it: group-relative advantages, clipped surrogate, KL."""
