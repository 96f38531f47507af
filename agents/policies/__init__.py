"""Policies the agents train: the Qwen2-VL / Qwen2.5-VL wrapper and the offline tiny-model builder."""
