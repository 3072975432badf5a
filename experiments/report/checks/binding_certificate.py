"""Check ``binding_certificate``: with binding, the batches seen certify the OF as the unique
UFM+ minimizer (docs/theory.md#theorem-2, #batch-binding).

The binding runs of check ``binding_speed``: holds if ``of_unique_so_far`` (C1 and C2 over the
union of the epochs' batches) is true at the last logged epoch. The partner's value (no
binding) is listed for comparison; examples that drop-last leaves out of every batch are
isolated vertices, so a fixed partition with a remainder never certifies.
"""

from __future__ import annotations

from experiments.report.checks.binding_speed import pairs
from experiments.report.labels import setup_text


def check(b, runs):
  for run, partner in pairs(runs):
    cert = b.num.evidence(run, "of_unique_so_far")
    partner_cert = b.num.final(partner, "of_unique_so_far")
    b.verdict("E5", "with binding the batches seen certify the OF as the unique UFM+ "
              "minimizer (C1 and C2 over the union of epochs)", setup_text(run, skip=["binding"]),
              [{"lhs": cert, "op": "==", "rhs": True}],
              [cert] + ([partner_cert] if partner_cert else []),
              f"holds if of_unique_so_far is true at the last epoch of {run.name} (the "
              f"second number is {partner.name}'s, without binding, for comparison; "
              "examples that drop-last leaves out of every batch are isolated vertices, "
              "so a fixed partition with a remainder never certifies)",
              "docs/theory.md#theorem-2, #batch-binding", kind="consistency")
