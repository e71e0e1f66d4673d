"""``jaxreg gradcheck``: finite differences vs jax.grad vs the textbook's NumPy backprop."""

from __future__ import annotations

from jaxreg.cli import flags, session


def add(sub) -> None:
    """``jaxreg gradcheck``: finite differences vs jax.grad vs the NumPy reference backprop."""
    p = sub.add_parser(
        "gradcheck",
        help="check the network's gradients three ways",
        description="Check gradients three ways (finite differences, jax.grad(jaxreg.loss), the textbook's "
        "NumPy backprop) for seeded random parameters on seeded random data or --data. Exit status 0 when "
        "the check passes under --rule, 1 when it fails, 2 on bad input.",
    )
    flags.add_settings(p, names=("layer_dims", "lambd", "keep_prob"), layer_dims={
        "default": (5, 3), "help": "hidden widths (default 5,3: the textbook's gradient-check network [4, 5, 3, 1], "
        "small so that its per-coordinate report stays readable; train, compare and sweep default to 20,3, which "
        "--layers 20,3 checks in well under a second)"})
    p.add_argument("--n-x", type=int, default=None, help="features of the random data (default 4)")
    p.add_argument("--m", type=int, default=None,
                   help="examples (default 3; with --data all training examples, or the first M)")
    p.add_argument("--data", metavar="PATH", type=flags.path, default=None,
                   help="a dataset file instead of random data (as jaxreg train --data: .npz, .mat or .csv)")
    p.add_argument("--seed", type=int, default=0, help="seeds parameters, data, masks, directions")
    p.add_argument("--epsilon", type=float, default=1e-7, help="finite-difference step (default 1e-7)")
    p.add_argument("--rule", choices=("error-model", "textbook"), default="error-model",
                   help="the verdict: every value within 10x its own finite-difference error bound "
                   "(error-model, the default) or the textbook's difference <= --threshold")
    p.add_argument("--threshold", type=float, default=2e-7,
                   help="the textbook rule's largest passing difference (default 2e-7)")
    p.add_argument("--directions", type=int, default=None, metavar="K",
                   help="check K random directions per parameter array instead of every coordinate")
    flags.add_run_flags(p)
    p.set_defaults(func=run)


def run(args, s: session.Session) -> int:
    """Build the network and data, run the three-way check, print it; 0 passed, 1 failed (under --rule)."""
    import functools
    import json

    import numpy as np

    from jaxreg import validate

    for name, value, least in (("--seed", args.seed, 0), ("--n-x", args.n_x, 1), ("--m", args.m, 1)):
        if value is not None and value < least:
            raise ValueError(f"{name}: got {value}, expected an integer >= {least}")
    X = Y = None
    if args.data is not None:
        from jaxreg import data

        dataset = data.load(args.data)
        X, Y = np.asarray(dataset.X, np.float64), np.asarray(dataset.Y, np.float64)
        if args.n_x is not None and args.n_x != X.shape[0]:
            raise ValueError(f"--n-x: got {args.n_x}, expected {X.shape[0]}, the features in {args.data}")
        if args.m is not None:
            if args.m > X.shape[1]:
                raise ValueError(f"--m: got {args.m}, expected at most {X.shape[1]}, the examples in {args.data}")
            X, Y = X[:, : args.m], Y[:, : args.m]
    n_x, m = (args.n_x or 4, args.m or 3) if X is None else X.shape
    dims = validate.layer_dims([n_x, *args.layers, 1])
    kps = validate.keep_prob(args.keep_prob, len(dims) - 2)
    s.start_jax()
    import jax

    from jaxreg import gradcheck, model, resources

    # Before any array is made: the data, and the network's activations for the four steps of each value
    # (generously, as for a training step), must fit (--m 100000000 is refused, not run for minutes).
    need = 8 * m * (dims[0] + 1) + 4 * resources.member_bytes(dims, m, dtype="float64")
    limit, where = resources.device_memory(jax.devices()[0])
    resources.require(f"a gradient check of layers {list(dims)} on {m} examples", need, limit, where,
                      "expected fewer examples (--m) or a smaller network (--layers)")

    @functools.partial(jax.jit, static_argnums=(1, 2))
    def draw(seed, dims, m):  # everything random in one compiled program (op by op: dozens of compilations)
        k_params, k_bias, k_x, k_y, k_masks, k_dirs = jax.random.split(jax.random.PRNGKey(seed), 6)
        params = model.init_params(k_params, dims, "he")
        # init_params starts the biases at zero; random ones check the biases away from that special point.
        for l, bias_key in enumerate(jax.random.split(k_bias, len(dims) - 1), start=1):
            params[f"b{l}"] = 0.1 * jax.random.normal(bias_key, params[f"b{l}"].shape)
        masks = model.dropout_masks(k_masks, dims, m, kps) if min(kps) < 1 else None
        X = jax.random.normal(k_x, (dims[0], m))
        return params, X, jax.random.bernoulli(k_y, 0.5, (1, m)).astype(X.dtype), masks, k_dirs

    with jax.enable_x64(True):  # the check runs in float64; draw the data and parameters in it too
        params, X_drawn, Y_drawn, masks, k_dirs = draw(args.seed, dims, m)
        X, Y = (np.asarray(X_drawn), np.asarray(Y_drawn)) if X is None else (X, Y)
        report = gradcheck.check_network(
            params, X, Y, lambd=args.lambd, keep_prob=kps, masks=masks, epsilon=args.epsilon,
            threshold=args.threshold, directions=args.directions, direction_key=k_dirs,
        )
    setting = {"layer_dims": list(dims), "m": int(X.shape[1]), "data": args.data or "random data",
               "lambd": args.lambd, "keep_prob": list(args.keep_prob), "seed": args.seed}
    passed = report.verdict(args.rule)
    if args.json:
        print(json.dumps({**setting, "rule": args.rule, **report.to_dict(), "passed": passed}))
    else:
        print("gradcheck: " + ", ".join(f"{k} {v}" for k, v in setting.items()))
        print(report.summary(args.rule))
    return 0 if passed else 1
