"""The report's checks: one module per claim, each a function ``check(b, runs, **options)``
that adds verdicts to the builder ``b`` (``b.verdict``, reading numbers through ``b.num``
and thresholds from ``b.t``) for the claim on `runs` (docs/experiments.md#checks).

An experiment names its checks with ``experiments.spec.check(name, runs=[...], **options)``;
`REGISTRY` maps each name to its function.
"""

from __future__ import annotations

from experiments.report.checks import (accuracy, angles, binding_certificate, binding_speed,
                                       etf_centered, gram_prediction, loss_floor, of_reached,
                                       references, relu_symmetry, tau_steps, ufm_certificate,
                                       ufm_minimum, zero_error)

REGISTRY = {
    "of_reached": of_reached.check,
    "etf_centered": etf_centered.check,
    "zero_error": zero_error.check,
    "relu_symmetry": relu_symmetry.check,
    "binding_speed": binding_speed.check,
    "binding_certificate": binding_certificate.check,
    "loss_floor": loss_floor.check,
    "angles": angles.check,
    "ufm_minimum": ufm_minimum.check,
    "ufm_certificate": ufm_certificate.check,
    "gram_prediction": gram_prediction.check,
    "tau_steps": tau_steps.check,
    "accuracy": accuracy.check,
    "references": references.check,
}
