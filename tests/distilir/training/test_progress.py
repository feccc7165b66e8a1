"""library_progress_bars turns transformers' and huggingface_hub's bars off inside, and leaves the
process's switches as it found them."""

from __future__ import annotations

from huggingface_hub import utils as hub_utils
from transformers.utils import logging as hf_logging

from distilir.training._progress import library_progress_bars


def _switches() -> tuple[bool, bool]:
    return hf_logging.is_progress_bar_enabled(), not hub_utils.are_progress_bars_disabled()


def test_off_inside_and_restored_after():
    before = _switches()
    with library_progress_bars(False):
        assert _switches() == (False, False)
    assert _switches() == before
    with library_progress_bars(True):
        assert _switches() == before


def test_a_switch_that_was_off_stays_off():
    before = _switches()
    hub_utils.disable_progress_bars()
    try:
        with library_progress_bars(False):
            pass
        assert _switches() == (before[0], False)
    finally:
        if before[1]:
            hub_utils.enable_progress_bars()
