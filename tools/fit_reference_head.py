"""Fit the referenced head (vrfer.personal.reference) of a model on labelled folders of people, and write the model with it.

The network's weights are not touched (its fingerprint stays; profiles and the int8 graph still fit it): only the
model's config gains `reference_head`. The shipped vrfer-lower's head was made with (docs/RESULTS.md, "The wearer's
neutral reference"):

    python tools/fit_reference_head.py --model vrfer-lower ../shared/data/taiwanese-dev ../shared/data/jaffe \
        --out src/vrfer/pretrained/vrfer-lower.safetensors

and its leave-one-dataset-out figures with the heads fitted on one folder each (--out /tmp/ref-tw.safetensors with
taiwanese-dev only, scored on JAFFE with `vrfer evaluate --reference neutral`, and the other way round).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vrfer.errors import VrferError
from vrfer.inference.loader import resolve, torch_model
from vrfer.models.registry import is_half, save_model
from vrfer.personal.adapt import fit_reference_head
from vrfer.personal.reference import REFERENCE_BLEND, REFERENCE_L2, with_head


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="labelled folders (labels.csv with subject; neutral photos)")
    ap.add_argument("--model", default="vrfer-lower", help="bundled model name or .safetensors file")
    ap.add_argument("--out", required=True, help="the model file to write (may be the bundled file itself)")
    ap.add_argument("--face", default="detect", choices=["detect", "none"])
    ap.add_argument("--occlusion", default="none", choices=["none", "headset", "upper-half"],
                    help="how the photos are read (default none: the clean photos, whose lower half the network "
                         "reads; see vrfer.personal.adapt.fit_reference_head for why not vrfer's headset)")
    ap.add_argument("--lam", type=float, default=REFERENCE_L2)
    ap.add_argument("--blend", type=float, default=REFERENCE_BLEND)
    a = ap.parse_args()
    try:
        model = torch_model(a.model)
        head = fit_reference_head(model, a.folders, a.face, a.occlusion, a.lam, a.blend, log=print)
        weights = resolve(a.model, "torch").weights    # keep the file's precision
        save_model(model, Path(a.out), with_head(model.cfg, head), half=weights is not None and is_half(weights))
    except VrferError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {a.out}: referenced head fitted on {', '.join(d['data'] for d in head.fitted_on)} "
          f"(lam {head.lam}, blend {head.blend})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
