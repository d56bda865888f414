"""Scripted evaluation of the Image Analogy Explainer: ``python -m eval SUITE --help``.

Suites (one module each): ``reproduce-2017`` (:mod:`eval.reproduce`), ``transforms``
(:mod:`eval.transforms`), ``agreement`` (:mod:`eval.agreement`). Metric functions are in
:mod:`eval.metrics`, the report writer in :mod:`eval.report`.
"""
