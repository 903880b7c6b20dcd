"""Exceptions raised by bowlrp with one-line messages meant for people."""


class BowlrpError(Exception):
    """Base class of every error bowlrp raises on purpose."""


class ImageError(BowlrpError, ValueError):
    """An image could not be read or has an unusable shape, dtype or content."""


class ModelFileError(BowlrpError, ValueError):
    """A model file is missing, of the wrong kind, untrusted or from another version."""


class RuleError(BowlrpError, ValueError):
    """A relevance rule is not supported by the stage it was given to."""
