"""Rule rewards from the command line: a spec such as ``"rouge:refs.jsonl"`` or ``"length:40"``.

:func:`parse_rule_reward` builds a reward callable of :mod:`minippo.rewards.rules` from a spec, and
:func:`load_references` reads the reference file that ``bleu:PATH`` and ``rouge:PATH`` name.
"""
from minippo.checks import check_str
from minippo.rewards.arithmetic import ArithmeticReward
from minippo.rewards.rules import BleuReward, KeywordReward, LengthReward, RougeReward
from minippo.rewards.text_metrics import LEVELS, check_references
from minippo.text.files import jsonl_lines, read_text

# Valid command-line forms of parse_rule_reward, shown in its error message.
RULE_REWARD_FORMS = (
    "bleu:PATH",
    "rouge:PATH",
    "keyword:WORD[,WORD...]",
    "length:N",
    "arithmetic:FORMAT_REWARD",
)
RULE_REWARD_KINDS = tuple(form.partition(":")[0] for form in RULE_REWARD_FORMS)
# The rules that count text tokens take the level as a suffix of their kind: ``rouge.char:PATH``.
LEVELLED_KINDS = ("bleu", "rouge", "keyword", "length")


def load_references(path):
    """Load references from a file, in the form :class:`~minippo.rewards.rules.ReferenceReward` accepts.

    - ``*.jsonl``: one JSON object per line, ``{"prompt": ..., "reference": ...}``
      with a str, or ``"references"`` with a non-empty list of str.  Returns a
      dict prompt -> list of references (lines with the same prompt add up;
      :class:`~minippo.rewards.rules.ReferenceReward` also merges prompts that
      differ only by surrounding whitespace).
    - any other file: plain text, one reference per line (blank lines are
      skipped), shared by every prompt.  Returns a list of str.

    The file must be UTF-8 text (:func:`~minippo.text.files.read_text`).  Errors name the file, and
    for JSONL the line.
    """
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise ValueError(f"reference file {path!r} does not exist") from None
    except ValueError as error:  # not UTF-8
        raise ValueError(f"reference file {error}") from None
    if not text.strip():
        raise ValueError(f"reference file {path!r} holds no reference")
    if not path.endswith(".jsonl"):
        return [line.strip() for line in text.splitlines() if line.strip()]

    references_by_prompt = {}
    for where, line, record in jsonl_lines(text, lambda number: f"{path}, line {number}"):
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise ValueError(f"{where}: expected an object with a str 'prompt', got {line!r:.200}")
        if isinstance(record.get("reference"), str):
            line_references = [record["reference"]]
        elif isinstance(record.get("references"), list):
            try:
                line_references = check_references(record["references"])
            except (TypeError, ValueError) as error:
                raise type(error)(f"{where}: {error}") from None
        else:
            raise ValueError(
                f"{where}: expected a str 'reference' or a list 'references', got {line!r:.200}"
            )
        references_by_prompt.setdefault(record["prompt"], []).extend(line_references)
    return references_by_prompt


def parse_rule_reward(spec):
    """Build a rule reward callable from a command-line string.

    ========================  ==========================================================
    ``bleu:PATH``             :class:`~minippo.rewards.rules.BleuReward` with the references in PATH
    ``rouge:PATH``            :class:`~minippo.rewards.rules.RougeReward` with the references in PATH
    ``keyword:WORD[,WORD..]`` :class:`~minippo.rewards.rules.KeywordReward`, e.g. ``keyword:polite,thank you``
    ``length:N``              :class:`~minippo.rewards.rules.LengthReward` with target N tokens, e.g. ``length:40``
    ``arithmetic:F``          :class:`~minippo.rewards.arithmetic.ArithmeticReward`: 1 for the exact answer, F
                              in [0, 1) for a wrong but well-formed number, e.g. ``arithmetic:0``
    ========================  ==========================================================

    PATH is read by :func:`load_references` (``.jsonl``: references per
    prompt; otherwise one shared reference per line).  Options keep their
    defaults (BLEU with add-1 smoothing, ROUGE-L F1), and text is counted at
    ``level="auto"``: by word, and by character in Chinese and Japanese (see
    :func:`~minippo.rewards.text_metrics.tokenize`).  ``bleu``, ``rouge``,
    ``keyword`` and ``length`` take another level after a dot:
    ``rouge.char:refs.txt``, ``length.word:40``.  An unknown or malformed spec
    raises ValueError listing the valid forms.
    """
    kind, separator, argument = check_str(spec, "spec").partition(":")
    kind, _, level = kind.strip().lower().partition(".")
    argument = argument.strip()
    valid_forms = (f"valid forms: {', '.join(RULE_REWARD_FORMS)}; {', '.join(LEVELLED_KINDS)} take a level "
                   f"({', '.join(LEVELS)}) after a dot, e.g. rouge.char:PATH")
    if not separator or not argument or kind not in RULE_REWARD_KINDS or \
            (level and (kind not in LEVELLED_KINDS or level not in LEVELS)):
        raise ValueError(f"unknown rule reward spec {spec!r}; {valid_forms}")
    level = level or "auto"
    if kind == "bleu":
        return BleuReward(load_references(argument), level=level)
    if kind == "rouge":
        return RougeReward(load_references(argument), level=level)
    if kind == "keyword":
        keywords = [keyword.strip() for keyword in argument.split(",") if keyword.strip()]
        if not keywords:
            raise ValueError(f"spec {spec!r} names no keyword; {valid_forms}")
        return KeywordReward(keywords, level=level)
    if kind == "arithmetic":
        try:
            return ArithmeticReward(float(argument))
        except ValueError:  # not a number, or not in [0, 1)
            raise ValueError(f"spec {spec!r}: FORMAT_REWARD must be a number in [0, 1); {valid_forms}") from None
    if not argument.isdigit() or int(argument) < 1:
        raise ValueError(f"spec {spec!r}: N must be a positive integer; {valid_forms}")
    return LengthReward(int(argument), level=level)
