"""What a gradient check reports, and how it reads: :class:`Report`, :class:`NetworkReport`.

Two verdicts sit side by side. The textbook's: ``difference = ||g - approx|| / (||g|| +
||approx||)`` over all values, passed when at most ``threshold`` (2e-7). The error model's
(``passed``): every checked value lies within ``safety`` times its own error bound; a value
whose step crosses a kink passes when it lies between its two one-sided differences, widened
by ``safety`` times the smaller of their bounds (see :mod:`jaxreg.gradcheck.core`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Entry", "Kink", "Report", "NetworkReport", "RULES"]

RULES = ("error-model", "textbook")  # the two verdicts, as the command line names them


class Entry(NamedTuple):
    """One compared value: ``name[index]`` (a coordinate of that array; in directional
    mode ``index`` is ``(k,)``, the k-th random direction within the array)."""

    name: str
    index: tuple[int, ...]
    grad: float  # the checked gradient (directional mode: <g, v>)
    approx: float  # the finite difference (in "exact" mode, the other gradient)
    error: float  # |grad - approx|
    bound: float  # the error the comparison itself may carry (finite differences: rounding + truncation)
    kink: bool = False  # a kink: approx is the nearer end of its one-sided differences' interval, bound their smaller

    @property
    def ratio(self) -> float:
        """``error / bound`` (0 when both are 0, inf for an error with a zero bound)."""
        return _ratio(self.error, self.bound)


class Kink(NamedTuple):
    """A value whose step crosses a kink, where the two-sided difference approximates no
    derivative: judged by the interval its two one-sided differences span."""

    name: str
    index: tuple[int, ...]
    grad: float  # the checked gradient (directional mode: <g, v>)
    left: float  # (J(x) - J(x - epsilon)) / epsilon
    right: float  # (J(x + epsilon) - J(x)) / epsilon
    bound: float  # the smaller of the two one-sided differences' error bounds
    passed: bool  # grad within [min(left, right) - safety x bound, max(left, right) + safety x bound]
    named: bool  # named by kink_pattern (check_network: the ReLU pattern), else found by the one-sided differences


class Report(NamedTuple):
    """The outcome of comparing a gradient with finite differences (or with another gradient).

    ``passed`` is the error model's verdict: no value differs by more than ``safety`` times
    its bound (NaN fails); a value whose step crosses a kink (``kinks``, ``n_kinks``) passes
    when it lies between its two one-sided differences, widened by ``safety`` times the
    smaller of their bounds. ``textbook_passed`` is the textbook's: ``difference`` (the
    ratio ``||g - approx|| / (||g|| + ||approx||)``, 0 where both are zero) is at most
    ``threshold``. ``offenders`` are the arrays holding a value that fails the error model:
    on a failed check they say where the bug is."""

    passed: bool
    textbook_passed: bool
    difference: float
    per_param: dict[str, float]  # array name -> the textbook's difference over that array, parameter order
    offenders: tuple[str, ...]  # arrays with a value beyond safety x its bound, parameter order
    n_failed: int  # values beyond safety x their bound, kinks outside their interval included
    n_kinks: int  # values whose step crosses a kink (judged by their one-sided differences)
    worst: tuple[Entry, ...]  # the top_k values by error / bound, largest first, kinks included
    kinks: tuple[Kink, ...]  # each kink, with its interval and what was decided, parameter order
    threshold: float
    safety: float
    epsilon: float | None  # None in "exact" mode
    mode: str  # "coordinates", "directions" or "exact" (two gradients compared directly)
    compared: str  # what was compared with what, in words
    n_losses: int  # perturbed losses evaluated (four per value: +-epsilon and +-2 epsilon)
    vectorised: bool  # False when the loss was not traceable and ran in a Python loop
    names: tuple[str, ...]  # the arrays, parameter order
    grad: np.ndarray  # (n,) the checked values, parameter order
    approx: np.ndarray  # (n,) the values they were checked against (two-sided differences, kinks too)
    bound: np.ndarray  # (n,) each comparison's own error bound (of the two-sided difference)
    losses: np.ndarray | None  # (n, 4) J at -2 epsilon, -epsilon, +epsilon, +2 epsilon; None in "exact" mode
    loss: float | None  # J at the parameters themselves, which the one-sided differences use; None in "exact" mode
    meaningless: str | None = None  # why the comparison measured nothing (then it cannot pass)

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN becomes None)."""
        return {
            "compared": self.compared,
            "mode": self.mode,
            "passed": self.passed,
            "textbook_passed": self.textbook_passed,
            "difference": _json_float(self.difference),
            "threshold": self.threshold,
            "safety": self.safety,
            "epsilon": self.epsilon,
            "per_param": {k: _json_float(v) for k, v in self.per_param.items()},
            "offenders": list(self.offenders),
            "n_failed": self.n_failed,
            "n_kinks": self.n_kinks,
            "worst": [
                {
                    "name": e.name,
                    "index": list(e.index),
                    "grad": _json_float(e.grad),
                    "approx": _json_float(e.approx),
                    "error": _json_float(e.error),
                    "bound": _json_float(e.bound),
                    "ratio": _json_float(e.ratio),
                    "kink": e.kink,
                }
                for e in self.worst
            ],
            "kinks": [_kink_dict(k) for k in self.kinks],
            "n_losses": self.n_losses,
            "meaningless": self.meaningless,
        }

    def summary(self) -> str:
        """A readable multi-line report."""
        eps = "" if self.epsilon is None else f", epsilon {self.epsilon:g}, {self.n_losses} losses"
        lines = [f"{self.compared} ({self.mode}{eps}): {_word(self.passed)}", "  " + _error_model_line(self)]
        if self.meaningless:
            lines.append(f"  cannot pass: {self.meaningless}")
        lines.append(
            f"  textbook: difference {self.difference:.3e} (threshold {self.threshold:g}): "
            f"{_word(self.textbook_passed)}"
        )
        lines += [
            f"  {name:<12} {value:.3e}{_mark(name, self.offenders, value, self.threshold, self.kinks)}"
            for name, value in self.per_param.items()
        ]
        if not self.passed:
            lines.append("  largest errors against their bounds:")
            lines += [f"    {_entry_text(e, self.mode)}" for e in self.worst]
        if self.kinks:
            lines.append(_kinks_text(self.kinks, self.safety))
        return "\n".join(lines)


class NetworkReport(NamedTuple):
    """The three-way check of the network. ``passed`` and ``textbook_passed`` need all
    three comparisons; ``difference`` and ``per_param`` are the worst over them and
    ``offenders`` their union. ``kinks`` are the hand-written gradient's (``fd_vs_backward``):
    each comparison finds the same kinks and decides on its own gradient."""

    passed: bool
    textbook_passed: bool
    difference: float
    per_param: dict[str, float]
    offenders: tuple[str, ...]
    fd_vs_autodiff: Report  # finite differences vs jax.grad(jaxreg.loss)
    fd_vs_backward: Report  # finite differences vs the NumPy backprop
    autodiff_vs_backward: Report  # jax.grad vs the NumPy backprop, coordinate by coordinate
    kinks: tuple[Kink, ...]  # fd_vs_backward's: judged by their one-sided differences
    n_kinks: int

    @classmethod
    def combine(cls, fd_vs_autodiff: Report, fd_vs_backward: Report, autodiff_vs_backward: Report):
        """The three comparisons as one report."""
        reports = (fd_vs_autodiff, fd_vs_backward, autodiff_vs_backward)
        names = fd_vs_autodiff.names
        return cls(
            passed=all(r.passed for r in reports),
            textbook_passed=all(r.textbook_passed for r in reports),
            difference=_worst(r.difference for r in reports),
            per_param={name: _worst(r.per_param[name] for r in reports) for name in names},
            offenders=tuple(name for name in names if any(name in r.offenders for r in reports)),
            fd_vs_autodiff=fd_vs_autodiff,
            fd_vs_backward=fd_vs_backward,
            autodiff_vs_backward=autodiff_vs_backward,
            kinks=fd_vs_backward.kinks,
            n_kinks=fd_vs_backward.n_kinks,
        )

    @property
    def reports(self) -> dict[str, Report]:
        return {
            "fd_vs_autodiff": self.fd_vs_autodiff,
            "fd_vs_backward": self.fd_vs_backward,
            "autodiff_vs_backward": self.autodiff_vs_backward,
        }

    def verdict(self, rule: str = "error-model") -> bool:
        """The verdict under ``rule``: ``"error-model"`` (``passed``) or ``"textbook"``."""
        if rule not in RULES:
            raise ValueError(f"rule: got {rule!r}, expected one of {', '.join(RULES)}")
        return self.passed if rule == "error-model" else self.textbook_passed

    def to_dict(self) -> dict:
        """JSON-ready summary: the verdicts, the worst differences and each comparison."""
        return {
            "passed": self.passed,
            "textbook_passed": self.textbook_passed,
            "difference": _json_float(self.difference),
            "per_param": {k: _json_float(v) for k, v in self.per_param.items()},
            "offenders": list(self.offenders),
            "n_kinks": self.n_kinks,
            "kinks": [_kink_dict(k) for k in self.kinks],
            "comparisons": {k: r.to_dict() for k, r in self.reports.items()},
        }

    def summary(self, rule: str = "error-model") -> str:
        """A readable table (one row per parameter array: the textbook's difference of each
        comparison), the error model's findings, and the verdict under ``rule``."""
        fd = self.fd_vs_backward
        lines = [
            f"mode {fd.mode}, epsilon {fd.epsilon:g}, {fd.n_losses} losses; textbook threshold "
            f"{fd.threshold:g}, safety factor {fd.safety:g}",
            f"{'':<10}" + "".join(f"{c:>14}" for c in ("finite diff", "finite diff", "jax.grad")),
            f"{'':<10}" + "".join(f"{c:>14}" for c in ("vs jax.grad", "vs backward", "vs backward")),
        ]
        for name in self.per_param:
            row = "".join(f"{r.per_param[name]:>14.3e}" for r in self.reports.values())
            mark = _mark(name, self.offenders, self.per_param[name], fd.threshold, self.kinks)
            lines.append(f"{name:<10}{row}{mark}")
        lines.append(f"{'overall':<10}" + "".join(f"{r.difference:>14.3e}" for r in self.reports.values()))
        for label, r in self.reports.items():
            lines.append(f"{label.replace('_', ' ')}: {_error_model_line(r)}")
            if not r.passed:
                lines += [f"  {_entry_text(e, r.mode)}" for e in r.worst]
        if self.kinks:
            lines.append(_kinks_text(self.kinks, fd.safety))
        lines.append(_verdict_line(self, rule))
        return "\n".join(lines)


def _verdict_line(report: NetworkReport, rule: str) -> str:
    fd = report.fd_vs_backward
    n_failed = max(r.n_failed for r in report.reports.values())
    within = "every value within its" if report.passed else f"{n_failed} value(s) beyond their"
    rules = {
        "error-model": f"the error model: {within} own error bound x {fd.safety:g} "
        f"({report.n_kinks} at kinks, judged between their one-sided differences)",
        "textbook": f"the textbook rule: difference {report.difference:.3e} "
        f"{'<=' if report.textbook_passed else '>'} {fd.threshold:g}",
    }
    other = RULES[1 - RULES.index(rule)]
    verdict = report.verdict(rule)
    offenders = "" if verdict else f"; offenders: {', '.join(report.offenders) or 'none by the error model'}"
    return (
        f"{'PASSED' if verdict else 'FAILED'} under {rules[rule]}{offenders}\n"
        f"(under {rules[other]}: {_word(report.verdict(other))})"
    )


def _error_model_line(r: Report) -> str:
    kinks = ""
    if r.n_kinks:
        kinks = f" ({r.n_kinks} at kinks, judged between their one-sided differences)"
    return f"error model: {r.n_failed} of {r.grad.shape[0]} values beyond {r.safety:g}x their error bound{kinks}: " + (
        _word(r.passed)
    )


def _mark(name: str, offenders, difference: float, threshold: float, kinks=()) -> str:
    if name in offenders:
        return "  <-- fails the error model"
    if not difference <= threshold:
        if any(k.name == name for k in kinks):
            return "  (above the textbook threshold, within the error bounds: steps across kinks)"
        return "  (above the textbook threshold, within the error bounds: a small gradient next to noise)"
    return ""


def _word(passed: bool) -> str:
    return "passed" if passed else "FAILED"


def _worst(values) -> float:
    values = list(values)
    return float("nan") if any(np.isnan(v) for v in values) else max(values)


def _ratio(error: float, bound: float) -> float:
    if np.isnan(error) or np.isnan(bound):
        return float("nan")
    if error == 0:
        return 0.0
    return float(error / bound) if bound > 0 else float("inf")


def _json_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _entry_text(e: Entry, mode: str) -> str:
    if mode == "directions":
        where, labels = f"{e.name} direction {e.index[0]}", ("<g, v>", "approx")
    else:
        where = f"{e.name}[{', '.join(map(str, e.index))}]"
        labels = ("grad", "approx" if mode != "exact" else "other")
    if e.kink:
        labels = (labels[0], "nearer one-sided")
    return (
        f"{where:<18} {labels[0]} {e.grad: .10e}  {labels[1]} {e.approx: .10e}  "
        f"|error| {e.error:.3e}  bound {e.bound:.3e}  ratio {e.ratio:.3g}"
    )


def _kink_dict(k: Kink) -> dict:
    return {
        "name": k.name,
        "index": list(k.index),
        "grad": _json_float(k.grad),
        "left": _json_float(k.left),
        "right": _json_float(k.right),
        "bound": _json_float(k.bound),
        "passed": k.passed,
        "named": k.named,
    }


def _kinks_text(kinks, safety: float) -> str:
    shown = ", ".join(f"{k.name}[{', '.join(map(str, k.index))}] {_word(k.passed)}" for k in kinks[:8])
    more = f" and {len(kinks) - 8} more" if len(kinks) > 8 else ""
    return (
        f"  note: {len(kinks)} step(s) cross a kink, where the two-sided difference approximates no derivative; "
        f"each is judged between its one-sided differences (widened by {safety:g}x the smaller bound): {shown}{more}"
    )
