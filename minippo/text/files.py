"""Reading a user's text file (training data, preference pairs, references, an MRP spec).

Every such file is UTF-8.  Python's own error for one that is not ("'utf-8' codec can't decode byte
0xe9 in position 3") names neither the file nor what to do, so :func:`read_text` says which file it is.
"""


def read_text(path):
    """The content of the UTF-8 text file ``path``.

    Raises ValueError ``"<path>: not UTF-8 text (<reason>)"`` for a file that is not valid UTF-8; a
    missing or unreadable file raises the usual OSError (FileNotFoundError, IsADirectoryError, ...).
    """
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason})") from None
