"""vrfer calibrate: a person's calibration profile from a few labelled faces of that person."""

from __future__ import annotations

from ..threads import add_threads_option
from ._options import add_detector_arg, add_face_arg, add_model_arg, model_source


def add_parser(sub):
    p = sub.add_parser("calibrate", help="make a person's calibration profile from labelled faces of them",
                       description="A calibration profile for one person (vrfer.personal.calibration): the model's last "
                                   "layer refitted on that person's faces for the classes given; the other classes "
                                   "keep the model's answer. Give CLASS=PATH pairs (a photo, a folder of photos or "
                                   "a video of that expression, e.g. happiness=smile.mp4) and/or --folder with a "
                                   "labels.csv. Use the profile with predict/serve --profile FILE and the same "
                                   "--model.")
    p.add_argument("examples", nargs="*", metavar="CLASS=PATH",
                   help="faces of one expression: a photo, a folder of photos, or a video (every frame)")
    p.add_argument("--folder", default=None,
                   help="a folder with labels.csv (file, label or label_name): every photo listed is enrolled")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip --folder's bad rows (unknown label, image not found) and count them (default: stop at "
                        "the first, naming it)")
    add_model_arg(p)
    p.add_argument("--out", required=True, metavar="FILE.json", help="the profile file to write (JSON)")
    p.add_argument("--person", default="", help="a name for the person, stored in the profile (default: none)")
    add_face_arg(p, boxes=False)
    add_detector_arg(p)
    p.add_argument("--max-frames", type=int, default=300, metavar="N",
                   help="at most N frames of each video (default: %(default)s)")
    add_threads_option(p)
    p.set_defaults(fn=run)


def run(a) -> int:

    from ..errors import VrferError
    from ..outputs import output_file
    from ..recognizer import Recognizer
    from ..inputs import media_of
    if not a.examples and not a.folder:
        raise VrferError("give CLASS=PATH pairs (e.g. happiness=smile.jpg) or --folder DIR")
    if a.max_frames < 1:
        raise VrferError(f"--max-frames {a.max_frames}: at least 1")
    out = output_file(a.out, suffix=".json", what="a profile")
    rec = Recognizer(model_source(a), face=a.face, backend="torch", threads=a.threads, detector=a.detector)
    examples: list = []
    for ex in a.examples:
        label, sep, path = ex.partition("=")
        from ..classes import class_name
        label = class_name(label)            # the spellings labels.csv takes: happy, joy, angry ...
        if not sep or not path:
            raise VrferError(f"{ex!r}: expected CLASS=PATH, e.g. happiness=smile.jpg")
        if label not in rec.classes:
            raise VrferError(f"{ex!r}: unknown class {label!r}; classes: {', '.join(rec.classes)}")
        examples += [(str(f), label) for f in media_of(path)]
    if a.folder:
        from ..datasets.folder import read_labels
        import sys
        items, bad = read_labels(a.folder, a.skip_bad)
        if bad.counts:
            print(f"{a.folder}: skipped {sum(bad.counts.values())} rows of labels.csv: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(bad.counts.items())), file=sys.stderr)
        people = sorted({it.subject for it in items if it.subject})
        if len(people) > 1:                  # a profile is one person's: several would blur into one
            from ..outputs import plural
            raise VrferError(f"{a.folder}: labels.csv names {plural(len(people), 'person')} (subject column: "
                             f"{', '.join(people[:3])}{' ...' if len(people) > 3 else ''}); a profile is one "
                             "person's: give a folder of one person's photos")
        examples += [(str(it.path), rec.classes[it.label]) for it in items]
    profile = rec.enrol(examples, person=a.person, max_frames=a.max_frames)
    profile.save(out)
    counts = ", ".join(f"{c} {n}" for c, n in profile.counts.items())
    from ..outputs import plural
    ref = (f"reference from {plural(profile.reference_count, 'neutral face')}" if profile.reference is not None else "")
    print(f"profile for {profile.model} ({'; '.join(x for x in (counts and counts + ' faces', ref) if x)}): {out}")
    return 0
