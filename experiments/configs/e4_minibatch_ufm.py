"""E4: mini-batch UFM+: batchings that violate C1 / C2, and batch-binding.

docs/theory.md#e4 (sections 5.1-5.2, B.2, E.5.1), reference numbers of docs/theory.md#ref-c1, #ref-c2:
- the C1 counter-example (experiments/schedules/c1_violation.json, K = 3, tau = 1, d = 8):
  minimum 6.617337, generally attained by a non-OF (dist_of > 0.1);
- the same batches with one binding example per class: minimum 22.402654, an OF;
- the C2 counter-example (c2_violation.json): minimum 23.963646 with cos(mu_1, mu_2) > 0.1;
  with binding an OF;
- a K = 10 step-imbalanced problem (R = 10) with one fixed partition into batches of 10
  (C1 fails) and the same with binding.

6 UFM solves (4 seeds inside each; 16 on the paper preset; times:
docs/results.md#sweep-timings). The solver runs without its larger-tau warm-up
(--no-continuation): the warm-up steers solves of the violating batchings towards the OF (in
the C2 example every seed then ends near it, docs/results.md#sweep-timings), which hides the
non-uniqueness these runs are about.

  make sweep EXP=e4_minibatch_ufm
  ufm check-batches experiments/schedules/c1_violation.json [--binding 1]
"""

from experiments.spec import check, ufm_run

C1 = "fixed:experiments/schedules/c1_violation.json"
C2 = "fixed:experiments/schedules/c2_violation.json"


def get_experiment(preset="cpu"):
  seeds = ("--seeds", 4 if preset == "cpu" else 16, "--no-continuation")
  toy = ("--dim", 8, "--temperature", 1)
  k10 = ("--classes", 10, "--imbalance", "step:10", "--n-max", 20, "--dim", 12, "--temperature", 1)
  runs = [
      ufm_run("c1_violation", "--batching", C1, *toy, *seeds),
      ufm_run("c1_binding", "--batching", C1, "--binding", 1, *toy, *seeds),
      ufm_run("c2_violation", "--batching", C2, *toy, *seeds),
      ufm_run("c2_binding", "--batching", C2, "--binding", 1, *toy, *seeds),
      ufm_run("k10_fixed", *k10, "--batching", "fixed:10", *seeds),
      ufm_run("k10_fixed_binding", *k10, "--batching", "fixed:10", "--binding", 1, *seeds),
  ]
  refs = [
      {"run": "c1_violation", "key": "loss", "value": 6.617337, "tol": 1e-5,
       "claim": "C1 violated: the minimum is the Thm 2 bound", "source": "docs/theory.md#ref-c1"},
      {"run": "c1_binding", "key": "loss", "value": 22.402654, "tol": 1e-5,
       "claim": "C1 batches with binding: the minimum", "source": "docs/theory.md#ref-binding"},
      {"run": "c2_violation", "key": "loss", "value": 23.963646, "tol": 1e-5,
       "claim": "C2 violated: the minimum is the Thm 2 bound", "source": "docs/theory.md#ref-c2"},
      {"run": "c2_violation", "key": "cosines.1.2", "op": ">", "value": 0.1,
       "claim": "C2 violated: classes 1 and 2, which never meet, keep a positive cosine",
       "source": "docs/theory.md#ref-c2"},
  ]
  return {
      "name": "e4_minibatch_ufm",
      "title": "E4: mini-batch UFM+, C1/C2 violations and batch-binding",
      "description": "UFM+ under fixed batchings that violate C1 or C2 (non-OF minima that "
                     "still reach the Thm 2 bound), and the same with batch-binding (unique OF).",
      "runs": runs,
      "checks": [check("references", values=refs), check("ufm_minimum"),
                 check("ufm_certificate"), check("of_reached")],
  }
