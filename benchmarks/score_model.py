"""Every figure a candidate model needs before it may replace the default (issue 21, "ship what wins"), by the
commands docs/RESULTS.md names, one `vrfer evaluate --json` each:

    FER+ valid and test, lower half, plain answers (--prior train): accuracy, mean per-class recall
    CK+48 (--face none, upper half): default answers and plain
    JAFFE and taiwanese-dev through the whole pipeline with vrfer's synthetic headset (--face detect
    --occlusion headset): generic, and adapted leave-one-person-out (--adapt loo)
    calibration from the generic model, K=1, 5 draws, unprofiled -> calibrated: JAFFE (no sessions: enrolment and
    scoring in one sitting, which flatters it) and taiwanese-dev (across sessions)

    python benchmarks/score_model.py --model runs/lite0-lower --out runs/lite0-lower/scores [--threads 1]

Writes each command's JSON to OUT/NAME.json and prints one table row; a finished JSON is reused (delete it to
measure again). Data under ../shared/data (or --data)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CASES = {   # name -> evaluate arguments after --model
    "ferplus-valid": "--dataset ferplus --root {d}/ferplus --split valid --occlusion upper-half --prior train",
    "ferplus-test": "--dataset ferplus --root {d}/ferplus --split test --occlusion upper-half --prior train",
    "ckplus48": "--dataset folder --root {d}/ckplus48 --face none --occlusion upper-half",
    "ckplus48-plain": "--dataset folder --root {d}/ckplus48 --face none --occlusion upper-half --prior train",
    "jaffe-generic": "--dataset folder --root {d}/jaffe --face detect --occlusion headset",
    "jaffe-adapted": "--dataset folder --root {d}/jaffe --face detect --occlusion headset --adapt loo",
    "taiwanese-generic": "--dataset folder --root {d}/taiwanese-dev --face detect --occlusion headset",
    "taiwanese-adapted": "--dataset folder --root {d}/taiwanese-dev --face detect --occlusion headset --adapt loo",
    "jaffe-calibrated": "--dataset folder --root {d}/jaffe --face detect --occlusion headset --enrol 1 --draws 5",
    "taiwanese-calibrated": "--dataset folder --root {d}/taiwanese-dev --face detect --occlusion headset --enrol 1 "
                            "--draws 5",
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", choices=sorted(CASES), help="these cases only")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    row = {}
    for name, args in CASES.items():
        if a.only and name not in a.only:
            continue
        f = out / f"{name}.json"
        if not f.is_file():
            cmd = [sys.executable, "-m", "vrfer", "evaluate", "--model", a.model, *args.format(d=a.data).split(),
                   "--threads", str(a.threads), "--json"]
            t0 = time.time()
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                print(f"{name}: failed: {r.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            res["_command"] = " ".join(["vrfer", *cmd[3:]])
            res["_seconds"] = round(time.time() - t0, 1)
            f.write_text(json.dumps(res, indent=1))
        res = json.loads(f.read_text())
        if "calibration" in res:
            u, c = res["calibration"]["unprofiled"], res["calibration"]["calibrated"]
            row[name] = f"{100 * u['accuracy']:.1f}% -> {100 * c['accuracy']:.1f}% (sd {100 * c['accuracy_sd']:.1f})"
        else:
            scored = res.get("adapted_loo") or res.get("generic") or res
            row[name] = f"{100 * scored['accuracy']:.2f}% / {scored['mean_class_recall']:.3f}"
        print(f"{name:20s} {row[name]}   ({res['_command']}, {res['_seconds']} s)", flush=True)
    print("| " + a.model + " | " + " | ".join(row.get(n, "-") for n in CASES) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
