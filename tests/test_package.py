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


def test_tour_oracle_beats_random_and_saves_renders(tmp_path, capsys):
    summary = tour(tmp_path, episodes=2, seed=0)
    assert len(summary) == 4
    for env_id, rewards in summary.items():
        assert rewards["oracle"] > rewards["random"], env_id
    assert len(list(tmp_path.glob("*.png"))) == 8
    assert "mean reward" in capsys.readouterr().out
