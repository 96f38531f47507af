"""Agents: policies and training algorithms that act in the perception environments."""
