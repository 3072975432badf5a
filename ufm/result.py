"""The result.json record of a solve (docs/contracts.md#ufm-outputs): `build_result` turns a
problem, its solver options and the solver's per-seed output into the dictionary that
``ufm solve`` writes and `ufm.solve` returns."""

from __future__ import annotations

import numpy as np

from geometry import runfiles
from geometry.metrics import OF_THRESHOLD
from ufm import options as options_lib


def _setup_name(problem) -> str:
  kind = "CE" if problem.loss_kind == "ce" else "SCL"
  model = "UFM+" if problem.final_relu else "UFM"
  sizes = problem.sizes
  shown = ",".join(map(str, sizes)) if len(sizes) <= 6 else \
      f"{sizes[0]},...,{sizes[-1]} (K={len(sizes)})"
  bind = f", binding {problem.binding}" if problem.binding else ""
  return (f"{model} {kind}, sizes {shown}, d={problem.dim}, tau={problem.temperature:g}, "
          f"{problem.batching}{bind}")


def _seed_fields(problem, solution, s: int, of_loss, optimal_loss) -> dict:
  """Loss, closed forms and geometry (docs/theory.md#metrics) of seed index s."""
  from geometry import metrics
  k = problem.num_classes
  h = solution.embeddings[s]
  geo = metrics.geometry_report(h, problem.labels, k)
  means, _ = metrics.class_means(h, problem.labels, k)
  loss = float(solution.loss[s])
  fields = {
      "seed": solution.seeds[s], "loss": loss, "of_loss": of_loss,
      "optimal_loss": optimal_loss,
      "gap": None if optimal_loss is None else loss - optimal_loss,
      "loss_minus_of": None if of_loss is None else loss - of_loss,
      "dist_of": geo["dist_of"], "dist_etf": geo["dist_etf"], "nc1": geo["nc1"],
      "nc1_over_k": geo["nc1_over_k"], "mean_cos": geo["mean_cos"],
      "class_mean_norms": [float(x) for x in geo["class_mean_norms"]],
      "gram": np.asarray(geo["gram"]).tolist(),
      "cosines": metrics.cosines(means).tolist(),
      "min_cos": float(_offdiag(metrics.cosines(means)).min()),
      "max_cos": float(_offdiag(metrics.cosines(means)).max()),
      "reached_of": bool(geo["dist_of"] < OF_THRESHOLD),
      "converged": bool(solution.converged[s]), "steps": int(solution.steps[s]),
      "pg_norm": float(solution.pg_norm[s]), "rel_change": float(solution.rel_change[s]),
      # UFM+ SCL: the objective is within certificate_tol of the lower bound, so the point is
      # a global minimizer (null where there is no bound).
      "certified": None if solution.certified is None else bool(solution.certified[s]),
  }
  if solution.classifier is not None:
    w = solution.classifier[s]
    fields["classifier"] = {"dist_etf": metrics.dist_etf(w), "dist_of": metrics.dist_of(w),
                            "mean_cos": metrics.mean_cos(w),
                            "norms": np.linalg.norm(w, axis=1).tolist(),
                            "cosines": metrics.cosines(w).tolist()}
    fields["embedding_norms_mean"] = float(np.linalg.norm(h, axis=1).mean())
  return fields


def _offdiag(a):
  a = np.asarray(a)
  return a[~np.eye(len(a), dtype=bool)]


def build_result(problem, options, solution) -> dict:
  """The result.json dictionary (docs/contracts.md): best seed at the top level, every seed listed."""
  from geometry import frames
  is_scl = problem.loss_kind == "scl"
  of_loss = problem.of_loss(solution.final_epoch) if is_scl else None
  optimal_loss = of_loss if (is_scl and problem.final_relu) else None
  per_seed = [_seed_fields(problem, solution, s, of_loss, optimal_loss)
              for s in range(len(solution.seeds))]
  best = int(np.nanargmin(solution.loss))
  result = dict(per_seed[best])
  # The problem definition sits at the top level, except its "loss" (scl/ce), which would
  # clash with the objective value: it is "loss_fn" there and "loss" inside "problem".
  definition = problem.describe()
  result["problem"] = dict(definition)
  definition["loss_fn"] = definition.pop("loss")
  result.update(definition)
  result["seed"] = per_seed[best]["seed"]
  result["seconds"] = solution.seconds
  result["setup"] = _setup_name(problem)
  result["loss_form"] = (
      "sum over anchors (paper form)" + ("" if problem.full_batch else
      f" and over the {len(problem.epoch_batches(solution.final_epoch))} batches of one epoch "
      f"(epoch {solution.final_epoch}'s schedule)") + ("" if is_scl else
      ", plus lambda_h/2 ||H||^2 + lambda_w/2 ||W||^2"))
  if is_scl and problem.full_batch:
    result["etf_loss"] = frames.collapsed_scl_loss(problem.sizes, frames.etf_gram(
        problem.num_classes), problem.temperature)
  if not problem.full_batch:
    from geometry import batching as batching_lib
    batches = problem.epoch_batches(solution.final_epoch)
    cert = batching_lib.batch_certificate(problem.labels, batches)
    # A row in no batch has no term in the objective: its embedding is wherever it started.
    seen = np.zeros(problem.num_examples, bool)
    seen[np.concatenate(batches)] = True
    result["certificate"] = {"c1_connected": {str(c): v for c, v in cert["c1_connected"].items()},
                             "c2_pairs_missing": cert["c2_pairs_missing"],
                             "of_unique": cert["of_unique"],
                             "rows_in_no_batch": int(np.sum(~seen))}
  dist = np.array([f["dist_of"] for f in per_seed])
  result["seeds"] = per_seed
  result["num_seeds"] = len(per_seed)
  result["fraction_of"] = float(np.mean(dist < OF_THRESHOLD))
  result["fraction_converged"] = float(np.mean([f["converged"] for f in per_seed]))
  result["certificate_rtol"] = solution.certificate_rtol
  result["certificate_tol"] = solution.certificate_tol
  result["certificate_rule"] = (None if solution.certified is None else
                                "certified: loss - optimal_loss <= certificate_tol = "
                                "certificate_rtol * (|optimal_loss| + anchor terms / tau)")
  result["num_certified"] = (None if solution.certified is None
                             else int(np.sum(solution.certified)))
  result["spread"] = {"loss_min": float(np.min(solution.loss)),
                      "loss_max": float(np.max(solution.loss)),
                      "dist_of_min": float(dist.min()), "dist_of_max": float(dist.max()),
                      "dist_of_median": float(np.median(dist))}
  result["solver"] = {"steps_budget": options.steps, "tol": options.resolved_tol(problem.dtype),
                      "learning_rate": options.resolved_lr(problem.loss_kind),
                      "continuation": [dict(temperature=p.temperature, mix=p.mix, steps=p.steps,
                                            final=p.final, rows=p.rows or None)
                                       for p in solution.phases],
                      "objective": options_lib.objective_statement(problem, options),
                      "block_size": solution.block_size, "seconds_total": solution.seconds}
  result["provenance"] = runfiles.provenance()   # versions, device, git commit (as run.json)
  return result
