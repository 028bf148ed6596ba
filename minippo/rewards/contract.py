"""The reward contract: what any judge of text takes and returns.

A reward is any callable that scores a batch::

    reward(prompts: list[str], responses: list[str]) -> np.ndarray of shape (B,)

one finite real number per (prompt, response) pair.  :func:`check_batch` checks what a reward
is given and :func:`check_rewards` what it returned; the RLHF trainer calls :func:`check_rewards` on
every batch, whatever the judge (a rule, a reward model, a user's function).
"""
import numpy as np

from minippo.checks import check_str, is_real


def check_batch(prompts, responses):
    """Check the arguments of a reward callable: two lists (or tuples) of str of the same length."""
    for name, texts in (("prompts", prompts), ("responses", responses)):
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"{name} must be a list of str, got {type(texts).__name__}")
        for index, text in enumerate(texts):
            check_str(text, f"{name}[{index}]")
    if len(prompts) != len(responses):
        raise ValueError(
            f"prompts and responses must have the same length, got {len(prompts)} and "
            f"{len(responses)}"
        )


def check_rewards(rewards, responses):
    """Check the rewards a reward callable returned for ``responses``; return them as float64.

    The rewards must be real numbers (not str, bool or None) of shape (B,),
    B = len(responses), and all finite.  Otherwise this raises ValueError
    (TypeError for non-numbers) that shows the first offending samples: their
    index, response text and reward value.  The trainer calls it on every
    batch, so that a NaN from a reward model stops training at the sample that
    caused it.
    """
    try:
        values = np.asarray(rewards)
    except ValueError as error:  # a ragged nested list
        raise ValueError(f"rewards must have shape (B,) = ({len(responses)},), one per response; {error}") from None
    if values.shape != (len(responses),):
        detail = ""
        if values.ndim == 1 and values.size < len(responses):
            index = values.size
            detail = f"; index {index} has no reward, response {responses[index]!r:.300}"
        elif values.ndim == 1:
            index = len(responses)
            detail = f"; index {index} has reward {values.tolist()[index]!r} but no response"
        raise ValueError(
            f"rewards must have shape (B,) = ({len(responses)},), one per response, "
            f"got shape {values.shape}{detail}"
        )
    # A list or tuple is checked item by item as given: NumPy would turn [True, 1.0] into [1.0, 1.0]
    # and ["a", 1.0] into strings.  A list of Python floats, the common case, needs no closer look.
    mixed_sequence = isinstance(rewards, (list, tuple)) and not all(type(value) is float for value in rewards)
    if mixed_sequence or values.dtype.kind not in "iuf":
        items = list(rewards) if mixed_sequence else values
        bad = np.flatnonzero([not is_real(value) for value in items])
        if bad.size:
            raise TypeError(
                f"rewards must be numbers (real, not str, bool or None); "
                f"{_offending_samples(np.array(items, dtype=object), responses, bad)}"
            )
    values = values.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"rewards must be finite; {_offending_samples(values, responses, bad)}")
    return values


def _offending_samples(values, responses, bad):
    """"k of B are not:" and the index, reward and response of the first three offending samples."""
    shown = values.tolist()  # Python objects: 'high' and nan rather than np.str_('high') and np.float64(nan)
    samples = "\n".join(
        f"  index {index}: reward {shown[index]!r}, response {responses[index]!r:.300}" for index in bad[:3]
    )
    more = f"\n  ... and {bad.size - 3} more" if bad.size > 3 else ""
    return f"{bad.size} of {values.size} are not:\n{samples}{more}"
