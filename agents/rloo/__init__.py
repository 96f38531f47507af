"""RLOO (Ahmadian et al., 2024): REINFORCE with a leave-one-out baseline from the group's other answers.

``agents.rloo.agent`` holds the algorithm (torch), ``agents.rloo.config`` its options (torch-free).
"""
