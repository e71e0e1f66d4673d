"""jaxreg's errors, as data (this module imports nothing).

A refused setting or argument is a :class:`ConfigError` carrying ``field`` (the library's
name), ``got`` (the value refused) and ``expected`` (what would be accepted, in words); its
text is ``"keep_prob: got 2.0, expected values in (0, 1] ..."``. Front ends name the field
their own way (the command line's flag, the estimator's parameter) with :meth:`ConfigError.renamed`,
never by reading the text. A training run whose cost turns NaN or infinite is a
:class:`TrainingDiverged`.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ConfigTypeError", "TrainingDiverged"]


class ConfigError(ValueError):
    """A setting or argument refused: ``field`` got ``got``, ``expected`` something else.

    ``shown`` is how the message shows the value (default ``repr(got)``; e.g. ``"shape (3,)"``
    where the shape is the point)."""

    def __init__(self, field: str, got, expected: str, *, shown: str | None = None):
        self.field, self.got, self.expected = field, got, expected
        self.shown = repr(got) if shown is None else shown
        super().__init__(f"{field}: got {self.shown}, expected {expected}")

    def __reduce__(self):  # pickling (pytest-xdist, multiprocessing) keeps the fields
        return _rebuild, (type(self), self.field, self.got, self.expected, self.shown)

    def renamed(self, field: str, shown: str | None = None) -> ConfigError:
        """The same error named by ``field`` (a flag, an estimator's parameter), with the value
        ``shown`` as the user typed it where given."""
        return type(self)(field, self.got, self.expected, shown=self.shown if shown is None else shown)


class ConfigTypeError(ConfigError, TypeError):
    """A :class:`ConfigError` for a value of the wrong kind (a string where numbers were expected)."""


def _rebuild(cls, field, got, expected, shown):
    return cls(field, got, expected, shown=shown)


class TrainingDiverged(RuntimeError):
    """The cost turned NaN or infinite at ``iteration``. ``result`` holds the last finite
    parameters (a :class:`~jaxreg.training.TrainResult`)."""

    def __init__(self, iteration: int, cost: float, result):
        super().__init__(
            f"training diverged at iteration {iteration} (cost {cost}); the parameters of "
            f"iteration {int(result.state.step)} were kept: try a smaller learning rate"
        )
        self.iteration = iteration
        self.cost = cost
        self.result = result
