"""Exports of a model for other runtimes; above the runtime (it imports it, never the reverse).

``python -m sicc.export web DIR``: the web bundle the JavaScript decoder in ``web/`` fetches
(:mod:`sicc.export.web`).
"""
