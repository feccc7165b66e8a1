"""A new student kind in one module: a bi-encoder initialised from the lower layers of its base.

DistilBERT-style initialisation (Sanh et al., 2019): keep the first ``layers`` transformer layers of a
sentence-transformers model, so the student starts from its teacher's own weights at a fraction of the
encoding cost. Registered in the test with one line:
``STUDENTS.register("layer-drop", "tests.distilir.extensions.layer_drop_student:LayerDropStudent")``.
"""

from __future__ import annotations

from typing import Any

from distilir.students.bi_encoder import BiEncoderStudent


class LayerDropStudent(BiEncoderStudent):
    kind = "layer-drop"
    help = "a bi-encoder keeping the first `layers` transformer layers of its base model"

    def __init__(self, model: Any = "all-MiniLM-L6-v2", layers: int = 2, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        encoder = self.model[0].auto_model
        encoder.encoder.layer = encoder.encoder.layer[: int(layers)]
        encoder.config.num_hidden_layers = len(encoder.encoder.layer)
        self.layers = len(encoder.encoder.layer)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "layers": self.layers}
