"""What ``logreg``'s 45-value search costs: one warm-started regularisation path against one fit and 45 fits.

Why: the linear-probe protocols choose ``C`` on a log grid of 45 values; fitted one by one that is 45
fits. ``logreg`` fits the grid as one path, from the strongest regularisation to the weakest, each fit
starting from the previous solution (``zoo_bench_strategies.probes.logreg_path`` does exactly this).
This computes EfficientNet-Lite0 features of real photos once (``--n`` per class), then times, with the
strategy's own solver settings (L-BFGS, max_iter 1000, tol 1e-6, no preprocessing): (a) one fit at
C = 1, (b) the 45-value path, (c) the 45 values fitted separately from scratch, and prints the path's
cost in single fits (b)/(a) and its speed-up over separate fits (c)/(b), with the number of values where
the two disagree on the test accuracy.

    python benchmarks/logreg_path.py --images ../shared/data/eurosat5 [--n 100]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from zoo_bench.plugins import load_plugins
from zoo_bench_strategies.probes import LOGREG_C

from photos import load_photos


def features(images: Path, part: str, per_class: int, backend, base, size: int) -> tuple[np.ndarray, np.ndarray]:
    batch = load_photos(images / part, per_class, size)
    return backend.features(base, batch.images, 32).astype(np.float64), batch.labels


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="a folder data set: train/<class>, test/<class>")
    parser.add_argument("--n", type=int, default=100, help="training photos per class")
    parser.add_argument("--n-test", type=int, default=100, help="test photos per class")
    args = parser.parse_args()
    registry = load_plugins()
    backend = registry.backends["torch"](device="cpu", precision="fp32")
    spec = registry.backbone("torch", "efficientnet_lite0")
    base = backend.build_base(spec, pretrained=True, image_size=spec.image_size)
    x, y = features(args.images, "train", args.n, backend, base, spec.image_size)
    xt, yt = features(args.images, "test", args.n_test, backend, base, spec.image_size)

    def fit(c: float, model=None) -> tuple[LogisticRegression, float]:
        model = model or LogisticRegression(max_iter=1000, tol=1e-6)
        model.set_params(C=c)
        start = time.perf_counter()
        model.fit(x, y)
        return model, time.perf_counter() - start

    one = fit(1.0)[1]
    warm = LogisticRegression(max_iter=1000, tol=1e-6, warm_start=True)
    path_acc, path_s, path_iter = {}, 0.0, {}
    for c in sorted(LOGREG_C):
        model, seconds = fit(c, warm)
        path_s += seconds
        path_acc[c], path_iter[c] = (model.predict(xt) == yt).mean(), int(model.n_iter_[0])
    alone_acc, alone_s, alone_iter = {}, 0.0, {}
    for c in LOGREG_C:
        model, seconds = fit(c)
        alone_s += seconds
        alone_acc[c], alone_iter[c] = (model.predict(xt) == yt).mean(), int(model.n_iter_[0])
    differ = [c for c in LOGREG_C if path_acc[c] != alone_acc[c]]
    print(f"{args.images.name}: {len(y)} train and {len(yt)} test photos, {x.shape[1]} features, "
          f"{len(set(y.tolist()))} classes; on {backend.device().name}")
    print(f"(a) one fit at C=1:                 {one:8.3f} s")
    print(f"(b) the 45-value path, warm starts:  {path_s:8.3f} s  = {path_s / one:.1f} single fits")
    print(f"(c) 45 separate fits:               {alone_s:8.3f} s  = {alone_s / path_s:.1f}x the path")
    capped = [c for c in LOGREG_C if max(path_iter[c], alone_iter[c]) >= 1000]
    print(f"test accuracy differs between (b) and (c) at {len(differ)} of {len(LOGREG_C)} values; L-BFGS stopped "
          f"at max_iter (1000) before the tolerance at {len(capped)} values"
          + (f", from C = {min(capped):.3g}" if capped else ""))
    for c in differ:
        print(f"  C = {c:.3g}: path {100 * path_acc[c]:.2f}% in {path_iter[c]} iterations, separate "
              f"{100 * alone_acc[c]:.2f}% in {alone_iter[c]}")


if __name__ == "__main__":
    main()
