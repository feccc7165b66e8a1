"""Progress bars of the libraries the trainers call, switched with the run's own ``progress`` setting.

transformers draws its own tqdm bars while it loads weights ("Loading weights") and saves them
("Writing model shards"); huggingface_hub draws them for downloads. ``progress: false`` (``distilir
train --quiet``) means no bars at all, so the trainers build and save models inside
:func:`library_progress_bars`, which turns those bars off for the duration and restores the previous
setting after (a library call leaves the process's global switches as it found them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["library_progress_bars"]


@contextmanager
def library_progress_bars(enabled: bool) -> Iterator[None]:
    """Inside the block, transformers' and huggingface_hub's progress bars are off unless ``enabled``."""
    if enabled:
        yield
        return
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    transformers_on = hf_logging.is_progress_bar_enabled()
    hub_on = not hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # transformers' bars and huggingface_hub's
    try:
        yield
    finally:
        if transformers_on:
            hf_logging.enable_progress_bar()  # turns huggingface_hub's on too ...
        if hub_on:
            hub_utils.enable_progress_bars()
        else:
            hub_utils.disable_progress_bars()  # ... unless they were off before
