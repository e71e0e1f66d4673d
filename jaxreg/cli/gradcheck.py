"""``jaxreg gradcheck``: finite differences vs jax.grad vs the textbook's NumPy backprop."""

from __future__ import annotations

from jaxreg.cli import common


def add(sub) -> None:
    """``jaxreg gradcheck``: finite differences vs jax.grad vs the NumPy reference backprop."""
    p = sub.add_parser(
        "gradcheck",
        help="check the network's gradients three ways",
        description="Check gradients three ways (finite differences, jax.grad(jaxreg.loss), the textbook's "
        "NumPy backprop) for seeded random parameters on seeded random data or --data. Exit status 0 when "
        "the check passes, 1 when it fails, 2 on bad input.",
    )
    p.add_argument("--layers", type=common.ints, default=(5, 3),
                   help="hidden widths (default 5,3: the textbook's [4, 5, 3, 1] check network)")
    p.add_argument("--n-x", type=int, default=None, help="features of the random data (default 4)")
    p.add_argument("--m", type=int, default=None,
                   help="examples (default 3; with --data all training examples, or the first M)")
    p.add_argument("--data", metavar="PATH", default=None, help="a dataset file instead of random data")
    p.add_argument("--lambd", type=float, default=0.0, help="L2 strength (default 0)")
    p.add_argument("--keep-prob", type=common.floats, default=(1.0,),
                   help="probability of KEEPING a unit, one value or one per hidden layer (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seeds parameters, data, masks, directions")
    p.add_argument("--epsilon", type=float, default=1e-7, help="finite-difference step (default 1e-7)")
    p.add_argument("--threshold", type=float, default=2e-7, help="largest passing difference (default 2e-7)")
    p.add_argument("--directions", type=int, default=None, metavar="K",
                   help="check K random directions per parameter array instead of every coordinate")
    common.add_run_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Build the network and data, run the three-way check, print it; 0 passed, 1 failed."""
    import json

    import jax
    import numpy as np

    from jaxreg import gradcheck, model, validate

    for name, value, least in (("--seed", args.seed, 0), ("--n-x", args.n_x, 1), ("--m", args.m, 1)):
        if value is not None and value < least:
            raise ValueError(f"{name}: got {value}, expected an integer >= {least}")
    common.start_jax(args)
    with jax.enable_x64(True):  # the check runs in float64; draw the data and parameters in it too
        k_params, k_bias, k_x, k_y, k_masks, k_dirs = jax.random.split(jax.random.PRNGKey(args.seed), 6)
        if args.data is None:
            n_x, m = args.n_x or 4, args.m or 3
            X = np.asarray(jax.random.normal(k_x, (n_x, m)))
            Y = np.asarray(jax.random.bernoulli(k_y, 0.5, (1, m)), np.float64)
            source = "random data"
        else:
            from jaxreg import data

            dataset = data.load(args.data)
            X, Y = np.asarray(dataset.X, np.float64), np.asarray(dataset.Y, np.float64)
            if args.n_x is not None and args.n_x != X.shape[0]:
                raise ValueError(f"--n-x: got {args.n_x}, expected {X.shape[0]}, the features in {args.data}")
            if args.m is not None:
                if args.m > X.shape[1]:
                    raise ValueError(
                        f"--m: got {args.m}, expected at most {X.shape[1]}, the examples in {args.data}"
                    )
                X, Y = X[:, : args.m], Y[:, : args.m]
            source = args.data
        dims = validate.layer_dims([X.shape[0], *args.layers, 1])
        params = model.init_params(k_params, dims, "he")
        # init_params starts the biases at zero; random ones check the biases away from that special point.
        bias_keys = jax.random.split(k_bias, len(dims) - 1)
        for l, bias_key in enumerate(bias_keys, start=1):
            params[f"b{l}"] = 0.1 * jax.random.normal(bias_key, params[f"b{l}"].shape)
        report = gradcheck.check_network(
            params, X, Y, lambd=args.lambd, keep_prob=args.keep_prob, key=k_masks, epsilon=args.epsilon,
            threshold=args.threshold, directions=args.directions, direction_key=k_dirs,
        )
    setting = {"layer_dims": list(dims), "m": int(X.shape[1]), "data": source, "lambd": args.lambd,
               "keep_prob": list(args.keep_prob), "seed": args.seed}
    if args.json:
        print(json.dumps({**setting, **report.to_dict()}, indent=2))
    else:
        print("gradcheck: " + ", ".join(f"{k} {v}" for k, v in setting.items()))
        print(report.summary())
    return 0 if report.passed else 1
