"""E3: UFM vs UFM+ toy studies: balanced, imbalanced, and the centering heuristic.

docs/theory.md#e3 (App. D.1), checked against the reference numbers of docs/theory.md#ref-thm1, #ref-ufm-balanced, #ref-metrics:
- balanced (K = 4, 5 per class, tau = 1): the UFM gives a simplex ETF (loss 41.473391), the
  UFM+ an OF;
- imbalanced (sizes 10, 10, 2, 2, d = 8): UFM+ reaches the Thm 1 value (61.824906 at tau = 1,
  53.288007 at tau = 0.5) with an OF; the UFM breaks the symmetry below it (57.508222 /
  49.401315), neither OF nor ETF;
- centering (K = 10, step R = 10; R = 100 too on the paper preset): the OF centered by the
  unweighted mean is an ETF, by the class-size-weighted mean it is not (dist_etf 0.416120 at
  R = 10, 0.506587 at R = 100).

7 UFM solves (the cpu preset; 8 on the paper preset, which solves 8 seeds per problem inside
each solve; times: docs/results.md#sweep-timings).
The R = 100 centering problem needs two examples per minority class (with singletons two
minority classes may coincide at no cost, so Thm 1 does not apply), i.e. 200 / 2 per class,
n = 1010: a slow problem with spurious stationary points (docs/theory.md#ufm), left to the paper
preset.

  make sweep EXP=e3_ufm_toys
  python -m experiments.sweep e3_ufm_toys --preset paper
"""

from experiments.spec import check, ufm_run


def get_experiment(preset="cpu"):
  seeds = ("--seeds", 1 if preset == "cpu" else 8)
  balanced = ("--classes", 4, "--imbalance", "none", "--n-max", 5, "--dim", 8, "--temperature", 1)
  runs = [ufm_run("balanced_ufm", *balanced, "--no-final-relu", *seeds),
          ufm_run("balanced_ufm_plus", *balanced, "--final-relu", *seeds)]
  for temperature in (1.0, 0.5):
    t = f"tau{temperature:g}"
    small = ("--sizes", "10,10,2,2", "--dim", 8, "--temperature", temperature)
    runs.append(ufm_run(f"imbalanced_ufm_plus_{t}", *small, "--final-relu", *seeds))
    runs.append(ufm_run(f"imbalanced_ufm_{t}", *small, "--no-final-relu", *seeds))
  # K = 10 UFM+ has spurious stationary points (docs/theory.md#ufm): several seeds, of which the
  # lowest loss is reported. The centering numbers depend only on the size ratios.
  for ratio, n_max in ((10, 20), (100, 200)):
    if ratio == 100 and preset == "cpu":
      continue
    runs.append(ufm_run(f"centering_ufm_plus_R{ratio}", "--classes", 10, "--imbalance",
                        f"step:{ratio}", "--n-max", n_max, "--dim", 10, "--temperature", 1,
                        "--final-relu", "--seeds", 4 if preset == "cpu" else 8))
  refs = [
      {"run": "balanced_ufm", "key": "loss", "value": 41.473391, "tol": 1e-5,
       "claim": "balanced UFM reaches the ETF value 20 log(4 + 15 e^{-4/3})",
       "source": "docs/theory.md#ref-ufm-balanced"},
      {"run": "imbalanced_ufm_plus_tau1", "key": "loss", "value": 61.824906, "tol": 1e-5,
       "claim": "UFM+ reaches the Thm 1 value at tau = 1", "source": "docs/theory.md#ref-thm1"},
      {"run": "imbalanced_ufm_plus_tau0.5", "key": "loss", "value": 53.288007, "tol": 1e-5,
       "claim": "UFM+ reaches the Thm 1 value at tau = 0.5", "source": "docs/theory.md#ref-thm1"},
      {"run": "imbalanced_ufm_tau1", "key": "loss", "value": 57.508222, "tol": 1e-4,
       "claim": "UFM (no ReLU) reaches the reference minimum at tau = 1",
       "source": "docs/theory.md#ref-ufm-imbalanced"},
      {"run": "imbalanced_ufm_tau0.5", "key": "loss", "value": 49.401315, "tol": 1e-4,
       "claim": "UFM (no ReLU) reaches the reference minimum at tau = 0.5",
       "source": "docs/theory.md#ref-ufm-imbalanced"},
      {"run": "imbalanced_ufm_tau1", "key": "dist_etf", "value": 0.327, "tol": 2e-3,
       "claim": "UFM (no ReLU) at tau = 1: dist_etf as in the reference", "source": "docs/theory.md#ref-ufm-imbalanced"},
      {"run": "imbalanced_ufm_tau0.5", "key": "dist_etf", "value": 0.186, "tol": 2e-3,
       "claim": "UFM (no ReLU) at tau = 0.5: dist_etf as in the reference",
       "source": "docs/theory.md#ref-ufm-imbalanced"},
      {"run": "centering_ufm_plus_R10", "key": "computed:dist_etf_weighted", "value": 0.416120,
       "tol": 1e-5, "claim": "OF centered by the class-size-weighted mean, R = 10: dist_etf",
       "source": "docs/theory.md#ref-metrics"},
      {"run": "centering_ufm_plus_R100", "key": "computed:dist_etf_weighted", "value": 0.506587,
       "tol": 1e-5, "claim": "OF centered by the class-size-weighted mean, R = 100: dist_etf",
       "source": "docs/theory.md#ref-metrics"},
  ]
  return {
      "name": "e3_ufm_toys",
      "title": "E3: UFM vs UFM+ (balanced, imbalanced, centering heuristic)",
      "description": "Toy UFM / UFM+ problems with the closed forms and reference numbers of "
                     "docs/theory.md#ref-thm1, #ref-ufm-balanced, #ref-metrics. The weighted-centering column of the UFM table "
                     "is the centering heuristic of App. D.1.",
      "runs": runs,
      "checks": [check("references", values=refs), check("ufm_minimum"), check("of_reached"),
                 check("etf_centered"), check("relu_symmetry")],
  }
