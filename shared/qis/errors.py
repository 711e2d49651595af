"""The qis exception tree (drawn in qis/__init__.py). Each carries a message that names what was wrong.

why(key, *args) builds a message from qis.errtext, which is imported only when something is refused,
so a board does not hold the texts (board RAM, design rule 7).
"""


class QisError(ValueError):
    pass


class CanonicalError(QisError):
    pass


class SchemaError(QisError):
    pass


class FrameError(QisError):
    """A frame that must be dropped. `reason` is a short stable word used as a metrics label."""

    def __init__(self, reason, message):
        # super(): MicroPython classes have no __init__ attribute to call through the base class.
        super().__init__("%s: %s" % (reason, message))
        self.reason = reason


class TopicError(QisError):
    pass


def why(key, *args):
    """The error text `key` of qis.errtext formatted with `args`."""
    from qis.errtext import TEXTS

    return TEXTS[key] % args
