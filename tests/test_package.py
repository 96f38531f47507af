"""Package-level promises: perception_env works without torch; the tour runs end to end."""

import subprocess
import sys

from perception_env.tour import tour


def test_perception_env_imports_no_torch_or_transformers():
    code = (
        "import sys, gymnasium as gym, perception_env\n"
        "for env_id in perception_env.ENV_IDS:\n"
        "    env = gym.make(env_id, render_mode='rgb_array'); env.reset(seed=0)\n"
        "    env.step(env.unwrapped.oracle_answer()); env.render()\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_perception_env_leaves_scipy_optimize_for_the_first_matching():
    """`import perception_env` (every command that names an env pays it) does not load scipy.optimize, over
    half of its import time; the first Hungarian matching does."""
    code = (
        "import sys, perception_env\n"
        "assert 'scipy.optimize' not in sys.modules\n"
        "from perception_env.rewards.matching import hungarian_match\n"
        "rows, cols = hungarian_match([[5.0, 1.0], [1.0, 5.0]])\n"
        "assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0], (rows, cols)\n"
        "assert 'scipy.optimize' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tour_oracle_beats_random_and_saves_renders(tmp_path, capsys):
    summary = tour(tmp_path, episodes=2, seed=0)
    assert len(summary) == 4
    for env_id, rewards in summary.items():
        assert rewards["oracle"] > rewards["random"], env_id
    assert len(list(tmp_path.glob("*.png"))) == 8
    assert "mean reward" in capsys.readouterr().out
