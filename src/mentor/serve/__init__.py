"""Serving trained models: bundles, the :class:`Recommender` API and the HTTP server.

Importing this package (or loading a bundle) needs only NumPy and safetensors; the HTTP server in
:mod:`mentor.serve.app` needs the ``serve`` extra.
"""

from mentor.serve.recommender import Recommendations, Recommender

__all__ = ["Recommendations", "Recommender"]
