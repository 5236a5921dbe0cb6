"""The edgescribe web dashboard: record or upload audio, follow jobs and nodes live, browse the history.

``python -m dashboard`` runs it with a hub inside (:mod:`dashboard.__main__`); ``create_app`` in
:mod:`dashboard.app` builds the Flask application. The API is in docs/api.md.
"""
