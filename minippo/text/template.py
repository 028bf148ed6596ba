"""Prompt templates: how a prompt and its response are laid out in the text a model reads.

A template is a text with the field ``{prompt}`` and, at its end, ``{response}``::

    Q: {prompt} A: {response}        the shipped corpus's format, the default
    问：{prompt}\\n答：{response}      a Chinese one, with no space before the response

The policy is given the part before the response, without the whitespace just before ``{response}``
(``"Q: Where is the bank? A:"``); that whitespace starts the response (``" Sure! ..."``), as GPT-2-style
tokenizers attach a space to the word after it.  A template without ``{response}`` means one space, then
the response: ``"Q: {prompt} A:"`` is the default.  Only the two fields are replaced, so other braces
are kept as they are.

``minippo reward-model``, ``rlhf``, ``dpo`` and ``value`` format the raw prompts of a user's files with
one template and record it in the checkpoints they write; a policy and a reward model that record
different templates cannot be used together (see :mod:`minippo.commands.models`).
"""
from dataclasses import dataclass

from minippo.checks import check_str
from minippo.text.corpus import PROMPT_PREFIX, RESPONSE_SEPARATOR

PROMPT_FIELD, RESPONSE_FIELD = "{prompt}", "{response}"
DEFAULT_TEMPLATE = f"{PROMPT_PREFIX}{PROMPT_FIELD}{RESPONSE_SEPARATOR} {RESPONSE_FIELD}"


@dataclass(frozen=True)
class Template:
    """A prompt template (see the module docstring); ``text`` always ends with ``{response}``.

    >>> template = Template("Q: {prompt} A:")
    >>> template.text
    'Q: {prompt} A: {response}'
    >>> template.prompt_text("Hi?") + template.response_text("Hello.")
    'Q: Hi? A: Hello.'
    """

    text: str = DEFAULT_TEMPLATE

    def __post_init__(self):
        text = check_str(self.text, "template")
        if not text.endswith(RESPONSE_FIELD):
            text += " " + RESPONSE_FIELD
        if text.count(PROMPT_FIELD) != 1 or text.count(RESPONSE_FIELD) != 1:
            raise ValueError(f"template must hold {PROMPT_FIELD} once and {RESPONSE_FIELD} at most once, at its "
                             f"end (e.g. {DEFAULT_TEMPLATE!r}), got {self.text!r}")
        object.__setattr__(self, "text", text)

    @property
    def _parts(self):
        """``(prompt part, separator)``: the text before ``{response}`` without its trailing whitespace, and
        that whitespace."""
        head = self.text[:-len(RESPONSE_FIELD)]
        prompt_part = head.rstrip()
        return prompt_part, head[len(prompt_part):]

    def prompt_text(self, prompt):
        """What the policy is given for the raw ``prompt``: ``"Q: <prompt> A:"`` by default."""
        return self._parts[0].replace(PROMPT_FIELD, prompt)

    def response_text(self, response):
        """How the raw ``response`` continues :meth:`prompt_text`: ``" <response>"`` by default."""
        return self._parts[1] + response


def agreed_template(choices):
    """The one template that ``choices``, ``(template or None, source)`` pairs, agree on; the default when
    none names one (None: not known).  ValueError naming both sources when two differ, e.g. a policy
    checkpoint and a reward model trained on differently formatted prompts."""
    named = [(template, source) for template, source in choices if template is not None]
    for template, source in named[1:]:
        if template != named[0][0]:
            raise ValueError(f"{named[0][1]} uses the prompt template {named[0][0].text!r} but {source} uses "
                             f"{template.text!r}; give them the same --template")
    return named[0][0] if named else Template()
