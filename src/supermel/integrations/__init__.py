"""Drop-in replacements inside the libraries users already work with.

Each integration lives in its own module and imports its host library only
when the module itself is imported, so ``import supermel`` never needs them:

:mod:`supermel.integrations.transformers`
    Hugging Face ``WhisperFeatureExtractor``, ``ASTFeatureExtractor`` and
    ``SeamlessM4TFeatureExtractor`` with supermel computing the features
    (``pip install "supermel[transformers]"``).
:mod:`supermel.integrations.faster_whisper`
    faster-whisper's ``FeatureExtractor``, and ``accelerate(model)`` to put it
    into a ``WhisperModel`` (``pip install "supermel[faster-whisper]"``).
:mod:`supermel.integrations.ray`
    ``Featurizer``, a callable class for Ray Data's ``Dataset.map_batches``
    (``pip install "supermel[ray]"``).
:mod:`supermel.integrations.datasets`
    ``add_features``: a feature column for a Hugging Face ``datasets.Dataset``,
    decoded with soundfile + soxr (``pip install "supermel[datasets]"``).
"""

__all__: list = []
