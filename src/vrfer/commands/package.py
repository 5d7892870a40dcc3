"""vrfer package: turn a training run's best weights into a named model that ships inside vrfer (vrfer.packaging)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("package", help="save a run's best weights as a named, bundled model (float16 safetensors)",
                       description="Turn a training run's best weights into a named model that ships inside vrfer "
                                   "(float16 safetensors with its config, training data and results in the "
                                   "metadata); `vrfer models` lists it and every command takes its name.")
    p.add_argument("run", help="training run folder (its best.safetensors) or a .safetensors file")
    p.add_argument("--name", required=True, help="registry name, e.g. vrfer-lower")
    p.add_argument("--trained-on", required=True, help="what it was trained on, shown by `vrfer models`")
    p.add_argument("--description", default="", help="one line shown by `vrfer models` (default: the run's)")
    p.add_argument("--result", action="append", default=[], metavar="KEY=VALUE",
                   help="a measured result to carry in the file's metadata, beside those the model already "
                        "carries (repeatable; default: none)")
    p.add_argument("--default-post", metavar="train|uniform[:TAU]", default=None,
                   help="the post-processing the model answers with by default (as --prior/--prior-tau of "
                        "predict), e.g. uniform:0.25 (default: the model's own; for a model without one, that "
                        "of the model it replaces, so that re-packaging keeps a shipped model's answers)")
    p.add_argument("--out", help="output file (default: vrfer/pretrained/NAME.safetensors in the package)")
    p.add_argument("--force", action="store_true",
                   help="replace a model of that name already in the package (e.g. re-shipping vrfer-lower)")
    p.set_defaults(fn=run)


def run(a) -> int:
    from ..packaging import check_name, package_model, parse_default_post, parse_results
    check_name(a.name)
    results = parse_results(a.result)
    default_post = parse_default_post(a.default_post) if a.default_post is not None else None
    done = package_model(a.run, a.name, a.trained_on, a.description, results, a.out, a.force, default_post)
    print(f"wrote {done.path} ({done.path.stat().st_size / 1e6:.1f} MB)")
    post = done.cfg.extra.get("default_post")
    if post:
        how = "as the plain model (prior 'train')" if post["prior"] == "train" else \
            f"with prior {post['prior']!r}, tau {post.get('tau', 1.0):g}"
        kept = ", kept from the model it replaces (--default-post sets another)" \
            if done.default_post_from == "replaced" else ""
        print(f"answers by default {how}{kept}")
    return 0
