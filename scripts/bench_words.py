"""Benchmark (not a test): the Google word-analogy benchmark, gensim against ``eval word-analogies``.

    .venv/bin/python scripts/bench_words.py [--restrict-vocab 300000] [--questions FILE] [--skip-suite]

Measured in the same run on the same vectors (GloVe 6B 50-d; machines are noisy, so compare ratios):

1. gensim 4.4.0's ``KeyedVectors.evaluate_word_analogies`` (3CosAdd, inputs excluded, one matrix-vector
   product per question);
2. the same benchmark as the suite computes it: 3CosAdd for every question, batched (eval.word_search),
   scored as gensim scores it; its counts must equal gensim's (checked here, total and per section);
   target: at most a quarter of gensim's time;
3. unless ``--skip-suite``: the whole suite's computation, every method and baseline (7), with and
   without exclusion, @1 and @5.

Both sides are timed with BLAS on all cores and on one thread (threadpoolctl): gensim makes one small
matrix-vector product per question, where BLAS threads mostly wait for each other on a busy machine,
so one thread can be several times faster for it. The ratios compare the faster setting of each side.
Loading the vectors, normalising them and reading the questions are outside every timing (each side
gets its vectors ready first). Needs gensim (requirements-test.txt).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eval import word_analogies as WA  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.models import Models  # noqa: E402
from pipeline.vectors import ALL_METHODS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restrict-vocab", type=int, default=300_000)
    parser.add_argument("--questions", type=Path)
    parser.add_argument("--skip-suite", action="store_true", help="time only gensim and the 3CosAdd benchmark")
    args = parser.parse_args()
    from gensim.models import KeyedVectors

    questions = args.questions or WA.default_questions_file()
    words = Models(Settings.from_env()).word_vectors
    restricted = words.restrict_vocab(args.restrict_vocab)
    unit, canonical = restricted.unit, restricted.canonical_rows()
    encoded = WA.encode(WA.read_questions(questions), restricted.folded_index)
    kv = KeyedVectors(words.dim)
    kv.add_vectors(words.keys, np.asarray(words.vectors))
    kv.fill_norms()
    print(f"{len(encoded.rows):,} questions scored of {sum(encoded.asked):,}, among the first "
          f"{len(restricted):,} words", flush=True)

    def timed(run, threads):
        with threadpool_limits(limits=threads):
            started = time.perf_counter()
            result = run()
            return time.perf_counter() - started, result

    gensim_times, ours_times = {}, {}
    for threads, label in ((None, "all cores"), (1, "one thread")):
        gensim_times[label], (_, sections) = timed(
            lambda: kv.evaluate_word_analogies(str(questions), restrict_vocab=args.restrict_vocab), threads)
        print(f"gensim evaluate_word_analogies, BLAS on {label}: {gensim_times[label]:8.1f} s", flush=True)
        ours_times[label], answers = timed(lambda: WA.evaluate(unit, canonical, encoded, methods=("3cosadd",)), threads)
        print(f"eval word-analogies, 3CosAdd, BLAS on {label}:    {ours_times[label]:8.1f} s", flush=True)
    gensim_label = min(gensim_times, key=gensim_times.get)
    ours_label = min(ours_times, key=ours_times.get)
    gensim_seconds, ours_seconds = gensim_times[gensim_label], ours_times[ours_label]
    ours = WA.score(encoded, answers, ("3cosadd",))["gensim"]
    theirs = {s["section"]: len(s["correct"]) for s in sections}
    same = (all(ours["sections"][name]["correct"] == theirs[name] for name in encoded.names)
            and ours["total"]["correct"] == theirs["Total accuracy"])
    print(f"3CosAdd benchmark: ours {ours_seconds:.1f} s ({ours_label}) / gensim {gensim_seconds:.1f} s ({gensim_label}) "
          f"= ratio {ours_seconds / gensim_seconds:.3f} (target <= 0.25); counts {'equal' if same else 'DIFFER'} "
          f"({ours['total']['correct']:,} of {ours['total']['total']:,})", flush=True)

    if not args.skip_suite:
        suite_seconds, answers = timed(lambda: WA.evaluate(unit, canonical, encoded, methods=ALL_METHODS),
                                       None if ours_label == "all cores" else 1)
        print(f"eval word-analogies, all 7 methods and baselines (BLAS on {ours_label}): {suite_seconds:8.1f} s   "
              f"ratio to gensim "
              f"{suite_seconds / gensim_seconds:.3f}; full scans {answers['fallbacks']}, "
              f"{answers['candidates']:.0f} candidates per question")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
