"""Tandem TranslateService: text translation with CTranslate2 + sentencepiece models.

`engine` owns language codes, the model directory (`tandem.json`), model loading and the
cross-stream batching; `servicer` maps it onto the gRPC API; `app` wires settings, warm-up
and metrics into the shared server (`python -m services translate`).
"""
