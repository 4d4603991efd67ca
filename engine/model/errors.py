"""The admin model's one error type: which field is wrong and why (ARCHITECTURE rule 7: typed inside).

The field is a path into the input as an operator wrote it (``extension``, ``users[3].extension``,
``numbers[0].route.target``) so the CLI and, later, the REST API can point at it without parsing text.
"""

from __future__ import annotations


class ModelError(ValueError):
    """Invalid admin input.

    Attributes:
        field: the path of the offending field; ``""`` when the document as a whole is at fault.
        message: a short human explanation, without the field name.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    def under(self, prefix: str) -> ModelError:
        """The same error with its field path placed under ``prefix`` (``users[3]`` + ``extension``)."""
        if not prefix:
            return self
        field = f"{prefix}.{self.field}" if self.field else prefix
        return ModelError(field, self.message)
