"""Run one fuzz target under atheris: ``python -m fuzz.run TARGET --seconds N`` (from tests/).

``make fuzz`` runs every target in turn, for ``FUZZ_SECONDS`` each (600 by
default), after installing atheris into the venv. The seed corpus is the
golden frames; what atheris finds goes to ``--dir`` (a crash-<sha1> file
with the input, which ``python -m fuzz.run TARGET --replay FILE`` runs
again without atheris). A run exits non-zero on the first finding: an
exception that is not a ``tether.TetherError``, an input slower than
``--timeout`` seconds, or one that takes the process past ``--rss-mb``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="etf_decode, loads, inspect_verify, stream or worker")
    parser.add_argument("--seconds", type=int, default=600, help="how long to fuzz (default 600)")
    parser.add_argument("--dir", default=None, help="where the corpus grows and findings go (default: a temp dir)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default 10)")
    parser.add_argument("--rss-mb", type=int, default=2048, help="memory one process may reach (default 2048)")
    parser.add_argument("--replay", help="run the target once on this file, without atheris")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # lossy-conversion warnings of mutated values are expected
    if args.replay:
        from .targets import TARGETS

        with open(args.replay, "rb") as f:
            TARGETS[args.target](f.read())
        print("no finding")
        return 0

    import atheris  # only here: the targets and the test suite run without it

    with atheris.instrument_imports(include=["tether"]):
        import tether  # noqa: F401  (instrumented for coverage feedback)
        from .targets import LIMITS, TARGETS, seeds
    tether.set_limits(LIMITS)
    target = TARGETS[args.target]
    work = args.dir or tempfile.mkdtemp(prefix=f"tether-fuzz-{args.target}-")
    corpus = os.path.join(work, "corpus")
    os.makedirs(corpus, exist_ok=True)
    for i, seed in enumerate(seeds(args.target)):
        with open(os.path.join(corpus, f"seed-{i}"), "wb") as f:
            f.write(seed)
    print(f"fuzzing {args.target} for {args.seconds} s; corpus and findings in {work}", flush=True)
    atheris.Setup(
        [sys.argv[0], corpus, f"-max_total_time={args.seconds}", f"-timeout={args.timeout}",
         f"-rss_limit_mb={args.rss_mb}", f"-artifact_prefix={work}/", "-print_final_stats=1"],
        target,
    )
    atheris.Fuzz()  # exits the process: 0 when the time is up with no finding
    return 0


if __name__ == "__main__":
    sys.exit(main())
