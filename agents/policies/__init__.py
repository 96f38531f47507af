"""Policies the agents train: the Qwen2-VL / Qwen2.5-VL wrapper and the offline tiny-model builder.

Importing this package checks the transformers version first: below 5.18 the Qwen-VL forward accepts
``mm_encoder_outputs`` through ``**kwargs`` and ignores it, so training would silently run without the
image (measured: 5.17 passes the arguments and the vision tower gets no gradient).
"""

from importlib.metadata import version as _version

from packaging.version import Version as _Version

MIN_TRANSFORMERS = "5.18"


def _check_transformers() -> None:
    installed = _version("transformers")
    if _Version(installed) < _Version(MIN_TRANSFORMERS):
        raise ImportError(
            f"perception-r1's policies need transformers >= {MIN_TRANSFORMERS} (installed: {installed}): older "
            "releases ignore the image features the training forward passes. Install the tested versions: "
            "pip install -c requirements/lock.txt 'perception-r1[train]' (or bash scripts/setup.sh)"
        )


_check_transformers()
