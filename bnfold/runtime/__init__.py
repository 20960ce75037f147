"""onnxruntime, shared by ``verify``, ``bench`` and the integrations.

``session`` creates sessions on a provider and level and says whether that provider really
ran (``session.get_providers()``, never the available list); ``providers`` loads plugin
execution providers; ``inputs`` (with ``specs``, ``dims``, ``generate``, ``valueranges``,
``npz``) turns a model's graph inputs into input sets the judges feed both models.

onnxruntime is imported only where a session is made.
"""
