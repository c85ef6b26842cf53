"""Optimisers that update ``Parameter.value`` in place from ``Parameter.grad``.

The protocol's optimiser is plain SGD on the summed loss: ``theta <- theta - lr * dL/dtheta``.
The others are PyTorch's (``torch.optim``): the same names, arguments, defaults and update
rules, step for step; ``docs/optimizers.md`` writes each rule out and says which to use.

- :class:`SGD` ``(params, lr, momentum=0, dampening=0, nesterov=False, weight_decay=0)``
- :class:`Adam` ``(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)``
- :class:`AdamW` ``(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)``
- :class:`RMSprop` ``(params, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0, weight_decay=0)``

Every optimiser computes in each parameter's dtype (hyper-parameters, and Adam's bias
corrections worked out in Python floats, are cast to it at every step, so a float64 ``lr``
never promotes a float32 model), on the parameter's array module (NumPy or CuPy; it follows a
model moved to another device between steps). ``lr`` may be changed between steps
(``opt.lr = ...``, as a schedule does).

``state_dict()`` saves everything a run needs to resume exactly; ``load_state_dict`` restores
it (hyper-parameters included, as PyTorch does). The layout, plain NumPy arrays and numbers::

    {"type": "adam",                 # numnet.core.names.OPTIMIZERS
     "step": 12,                     # updates made so far
     "hyper": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.0},
     "state": [{"exp_avg": array, "exp_avg_sq": array},   # one dict per parameter, in order;
               ...]}                                      # {} before the first step

The buffers of each type: sgd ``momentum_buffer`` (with momentum); adam, adamw ``exp_avg``,
``exp_avg_sq``; rmsprop ``square_avg`` and ``momentum_buffer`` (with momentum).
:func:`state_to_arrays` / :func:`state_from_arrays` flatten it for ``numpy.savez``.

The application builds one from a spec (:func:`check_spec` runs without any parameters, so a
protocol can be refused before its data is loaded)::

    build(model.parameters(), {"type": "adam", "betas": [0.9, 0.999], "weight_decay": 1e-4},
          lr=0.001)
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from numnet.core.backend import array_module, to_numpy
from numnet.core.errors import OptimizerError
from numnet.core.layers import Parameter
from numnet.core.names import OPTIMIZERS

Array = Any
STATE_KEYS = ("type", "step", "hyper", "state")

# ----------------------------------------------------------------------------------------------
# checking arguments and specs (shared with numnet.core.schedules)
# ----------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def did_you_mean(word: Any, candidates: Iterable[str]) -> str:
    """``" (did you mean 'adam'?)"`` for the closest of ``candidates``, or ``""``."""
    close = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_real(where: str, name: str, value: Any, ok: Callable[[float], bool], rule: str) -> float:
    """``float(value)`` when ``value`` is a finite real number (not a bool) for which ``ok``
    holds; otherwise an :class:`OptimizerError` like ``"Adam: eps must be a finite number > 0,
    got 0.0"``."""
    if (isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or not ok(float(value))):
        raise OptimizerError(f"{where}: {name} must be a finite number {rule}, got {_show(value)}")
    return float(value)


def check_int(where: str, name: str, value: Any, low: int) -> int:
    """``int(value)`` when ``value`` is an integer (not a bool) ``>= low``; else an error."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral) or (
            value < low):
        raise OptimizerError(f"{where}: {name} must be an integer >= {low}, got {_show(value)}")
    return int(value)


def check_keys(where: str, given: Iterable[str], allowed: Sequence[str], what: str) -> None:
    """Refuse the first key of ``given`` that is not in ``allowed``, with a "did you mean"."""
    for key in given:
        if key not in allowed:
            raise OptimizerError(f"{where}: unknown key {key!r} for {what}"
                                 f"{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")


def check_type(where: str, spec: Any, names: Sequence[str]) -> str:
    """The ``"type"`` of a spec mapping, one of ``names``; an error with a "did you mean"."""
    if not isinstance(spec, Mapping):
        raise OptimizerError(f"{where}: must be a mapping with a 'type' (one of "
                             f"{', '.join(names)}), got {_show(spec)}")
    if "type" not in spec:
        raise OptimizerError(f"{where}: missing key 'type' (one of {', '.join(names)})")
    kind = spec["type"]
    if not isinstance(kind, str) or kind not in names:
        raise OptimizerError(f"{where}: unknown type {_show(kind)}{did_you_mean(kind, names)}; "
                             f"expected one of {', '.join(names)}")
    return kind


def _nonnegative(where: str, name: str, value: Any) -> float:
    return check_real(where, name, value, lambda x: x >= 0, ">= 0")


def _unit(where: str, name: str, value: Any) -> float:
    return check_real(where, name, value, lambda x: 0 <= x < 1, "in [0, 1)")


def _positive(where: str, name: str, value: Any) -> float:
    return check_real(where, name, value, lambda x: x > 0, "> 0")


# ----------------------------------------------------------------------------------------------
# the shared base class
# ----------------------------------------------------------------------------------------------


class Optimizer:
    """What every optimiser shares: the parameter list, checked hyper-parameters (``lr``
    settable), the step count, per-parameter state and scratch arrays, ``zero_grad``,
    ``state_dict`` and ``load_state_dict``. Subclasses write ``step`` and ``_check``."""

    #: the type name (``numnet.core.names.OPTIMIZERS``)
    name: ClassVar[str]

    def __init__(self, params: Iterable[Parameter], **hyper: Any) -> None:
        self.params = list(params)
        if not self.params:
            raise OptimizerError(f"{type(self).__name__} got an empty parameter list")
        self._set_hyper(self.check_hyper(type(self).__name__, hyper))
        self.step_count = 0  # updates made so far (PyTorch keeps one count per parameter)
        self.state: list[dict[str, Array]] = [{} for _ in self.params]
        self._scratch: list[dict[str, Array]] = [{} for _ in self.params]

    # --- hyper-parameters

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Hyper-parameter -> default, read from ``__init__``'s signature (``lr`` of SGD has
        none: ``inspect.Parameter.empty``)."""
        sig = inspect.signature(cls.__init__).parameters
        return {n: p.default for n, p in sig.items() if n not in ("self", "params")}

    @classmethod
    def check_hyper(cls, where: str, hyper: Mapping[str, Any],
                    complete: bool = False) -> dict[str, Any]:
        """Checked hyper-parameters with the defaults filled in, except ``lr``: present only
        when given (the constructors always give it; a spec may leave it to the caller).
        ``complete``: every one must be given (a saved state)."""
        defaults = cls.defaults()
        check_keys(where, hyper, tuple(defaults), f"type {cls.name!r}")
        missing = [n for n in defaults if complete and n not in hyper]
        if missing:
            raise OptimizerError(f"{where}: missing {', '.join(missing)}")
        full = {**defaults, **hyper}
        if "lr" in hyper:
            full["lr"] = _nonnegative(where, "lr", hyper["lr"])
        else:
            del full["lr"]
        full["weight_decay"] = _nonnegative(where, "weight_decay", full["weight_decay"])
        cls._check(where, full)
        return full

    @classmethod
    def _check(cls, where: str, hyper: dict[str, Any]) -> None:
        """Check (and normalise in place) the hyper-parameters other than lr, weight_decay."""
        raise NotImplementedError

    def _set_hyper(self, hyper: dict[str, Any]) -> None:
        for name, value in hyper.items():
            setattr(self, name, value)

    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters as plain numbers (``betas`` a list), as ``state_dict`` saves."""
        return {n: list(getattr(self, n)) if n == "betas" else getattr(self, n)
                for n in self.defaults()}

    @property
    def lr(self) -> float:
        """The learning rate of the next step; set it between steps (schedules do)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _nonnegative(type(self).__name__, "lr", value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.hyper().items())})"

    # --- helpers of the steps

    def _tmp(self, k: int, name: str, p: Parameter) -> Array:
        """Scratch array ``name`` of parameter ``k``, shaped like it, kept across steps."""
        tmp = self._scratch[k].get(name)
        xp = array_module(p.value)
        if (tmp is None or tmp.shape != p.value.shape or tmp.dtype != p.value.dtype
                or array_module(tmp) is not xp):
            tmp = self._scratch[k][name] = xp.empty_like(p.value)
        return tmp

    def _grad(self, k: int, p: Parameter) -> Array:
        """``grad + weight_decay * p`` (L2 in the gradient): ``p.grad`` itself when there is no
        weight decay, else a scratch array (``p.grad`` is never changed)."""
        if not self.weight_decay:
            return p.grad
        g = self._tmp(k, "decayed", p)
        array_module(p.value).multiply(p.value, p.value.dtype.type(self.weight_decay), out=g)
        g += p.grad
        return g

    def _state(self, k: int, p: Parameter) -> dict[str, Array]:
        """Parameter ``k``'s buffers, moved to its array module if the model changed device."""
        state, xp = self.state[k], array_module(p.value)
        for name, a in state.items():
            if array_module(a) is not xp:
                state[name] = to_numpy(a) if xp is np else xp.asarray(a)
        return state

    # --- the interface

    def step(self) -> None:
        """Apply one update to every parameter from its current ``grad``."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every gradient to zero (not needed by numnet's layers, which overwrite grads)."""
        for p in self.params:
            p.grad[...] = 0

    def buffer_names(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        """The per-parameter buffers this optimiser keeps under ``hyper`` after a step."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """A host (NumPy) copy of everything needed to resume (layout in the module docstring)."""
        return {"type": self.name, "step": self.step_count, "hyper": self.hyper(),
                "state": [{n: np.array(to_numpy(a)) for n, a in s.items()} for s in self.state]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (hyper-parameters included). Everything is checked
        before anything changes: the type, the keys, one entry per parameter holding exactly
        this type's buffers (none before the first step), each of the parameter's shape and
        dtype. A mismatch raises :class:`OptimizerError` naming it."""
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping) or set(state) != set(STATE_KEYS):
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise OptimizerError(f"{where}: expected a mapping with keys "
                                 f"{', '.join(STATE_KEYS)}, got {got}")
        if state["type"] != self.name:
            raise OptimizerError(f"{where}: the state is of a {_show(state['type'])} optimiser, "
                                 f"this one is {self.name!r}")
        step = check_int(where, "step", state["step"], 0)
        if not isinstance(state["hyper"], Mapping):
            raise OptimizerError(f"{where}: hyper must be a mapping, got {_show(state['hyper'])}")
        hyper = self.check_hyper(where, state["hyper"], complete=True)
        entries = state["state"]
        if not isinstance(entries, Sequence) or len(entries) != len(self.params):
            n = len(entries) if isinstance(entries, Sequence) else _show(entries)
            raise OptimizerError(f"{where}: state has {n} entries, the optimiser has "
                                 f"{len(self.params)} parameters")
        expected = set(self.buffer_names(hyper)) if step else set()
        for k, (p, entry) in enumerate(zip(self.params, entries, strict=True)):
            if not isinstance(entry, Mapping) or set(entry) != expected:
                got = sorted(entry) if isinstance(entry, Mapping) else _show(entry)
                raise OptimizerError(f"{where}: state[{k}] holds {got}, expected "
                                     f"{sorted(expected)} after {step} steps")
            for name, a in entry.items():
                if not hasattr(a, "shape") or tuple(a.shape) != p.shape or a.dtype != p.dtype:
                    got = f"{a.dtype}{tuple(a.shape)}" if hasattr(a, "shape") else _show(a)
                    raise OptimizerError(f"{where}: state[{k}].{name} is {got}, the parameter "
                                         f"is {p.dtype}{p.shape}")
        self._set_hyper(hyper)
        self.step_count = step
        self.state = [{n: array_module(p.value).array(a, copy=True) for n, a in entry.items()}
                      for p, entry in zip(self.params, entries, strict=True)]


# ----------------------------------------------------------------------------------------------
# the optimisers
# ----------------------------------------------------------------------------------------------


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's momentum, dampening, Nesterov and L2 weight
    decay. Without momentum and weight decay (the protocol) a step is exactly
    ``p -= lr * grad``, in one multiply into a kept scratch array and one subtraction."""

    name = "sgd"

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         nesterov=nesterov, weight_decay=weight_decay)

    @classmethod
    def _check(cls, where: str, hyper: dict[str, Any]) -> None:
        hyper["momentum"] = _nonnegative(where, "momentum", hyper["momentum"])
        hyper["dampening"] = check_real(where, "dampening", hyper["dampening"],
                                        lambda x: 0 <= x <= 1, "in [0, 1]")
        if not isinstance(hyper["nesterov"], bool | np.bool_):
            raise OptimizerError(f"{where}: nesterov must be true or false, "
                                 f"got {_show(hyper['nesterov'])}")
        hyper["nesterov"] = bool(hyper["nesterov"])
        if hyper["nesterov"] and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
            raise OptimizerError(f"{where}: nesterov needs momentum > 0 and dampening 0, got "
                                 f"momentum={hyper['momentum']}, dampening={hyper['dampening']}")

    def buffer_names(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if hyper["momentum"] else ()

    def step(self) -> None:
        """One update of every parameter (``b`` is the momentum buffer, ``t`` the step)::

            g = grad + weight_decay * p
            b = g                                   (t = 1)
            b = momentum * b + (1 - dampening) * g  (t > 1)
            g = g + momentum * b  if nesterov, else  g = b      (with momentum)
            p = p - lr * g
        """
        self.step_count += 1
        for k, p in enumerate(self.params):
            xp, dtype = array_module(p.value), p.value.dtype.type
            g = self._grad(k, p)  # p.grad itself without weight decay
            tmp = self._tmp(k, "update", p)
            if self.momentum:
                mu = dtype(self.momentum)
                state = self._state(k, p)
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = xp.array(g, copy=True)
                else:
                    buf *= mu
                    if self.dampening:
                        xp.multiply(g, dtype(1 - self.dampening), out=tmp)
                        buf += tmp
                    else:
                        buf += g
                if self.nesterov:
                    g_new = self._tmp(k, "nesterov", p)
                    xp.multiply(buf, mu, out=g_new)
                    g_new += g
                    g = g_new
                else:
                    g = buf
            xp.multiply(g, dtype(self.lr), out=tmp)
            p.value -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba) as PyTorch computes it, with L2 weight decay added to the gradient.
    :class:`AdamW` is the same with the weight decay decoupled from the gradient."""

    name = "adam"
    decoupled = False  # AdamW: decay the weights directly instead of adding L2 to the gradient

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    @classmethod
    def _check(cls, where: str, hyper: dict[str, Any]) -> None:
        betas = hyper["betas"]
        if isinstance(betas, str | bytes) or not isinstance(betas, Sequence | np.ndarray) or (
                len(betas) != 2):
            raise OptimizerError(f"{where}: betas must be two numbers in [0, 1), "
                                 f"got {_show(betas)}")
        hyper["betas"] = (_unit(where, "betas[0]", betas[0]), _unit(where, "betas[1]", betas[1]))
        hyper["eps"] = _positive(where, "eps", hyper["eps"])

    def buffer_names(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def step(self) -> None:
        """One update of every parameter (``t`` counts steps from 1; ``m``, ``v`` start at 0)::

            g = grad + weight_decay * p              (Adam: L2 in the gradient)
            p = p * (1 - lr * weight_decay)          (AdamW instead: decoupled decay)
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
        """
        self.step_count += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.step_count)
        bias_correction2_sqrt = (1 - beta2**self.step_count) ** 0.5
        for k, p in enumerate(self.params):
            xp, dtype = array_module(p.value), p.value.dtype.type
            if self.decoupled:
                g = p.grad
                if self.weight_decay:
                    p.value *= dtype(1 - self.lr * self.weight_decay)
            else:
                g = self._grad(k, p)
            state = self._state(k, p)
            if not state:  # the first step: m_0 = v_0 = 0
                state.update({n: xp.zeros_like(p.value) for n in ("exp_avg", "exp_avg_sq")})
            m, v, tmp = state["exp_avg"], state["exp_avg_sq"], self._tmp(k, "update", p)
            m *= dtype(beta1)
            xp.multiply(g, dtype(1 - beta1), out=tmp)
            m += tmp
            v *= dtype(beta2)
            xp.multiply(g, g, out=tmp)
            tmp *= dtype(1 - beta2)
            v += tmp
            xp.sqrt(v, out=tmp)  # the denominator
            tmp /= dtype(bias_correction2_sqrt)
            tmp += dtype(self.eps)
            xp.divide(m, tmp, out=tmp)
            tmp *= dtype(step_size)
            p.value -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): each step first shrinks the
    weights, ``p *= 1 - lr * weight_decay``, then makes Adam's update from the plain gradient.
    PyTorch's default ``weight_decay=1e-2``."""

    name = "adamw"
    decoupled = True

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop (Hinton) as PyTorch computes it (not centred): each gradient is divided by a
    running root-mean-square of its past values, ``eps`` added outside the square root."""

    name = "rmsprop"

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                         weight_decay=weight_decay)

    @classmethod
    def _check(cls, where: str, hyper: dict[str, Any]) -> None:
        hyper["alpha"] = _unit(where, "alpha", hyper["alpha"])
        hyper["eps"] = _positive(where, "eps", hyper["eps"])
        hyper["momentum"] = _nonnegative(where, "momentum", hyper["momentum"])

    def buffer_names(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("square_avg", "momentum_buffer") if hyper["momentum"] else ("square_avg",)

    def step(self) -> None:
        """One update of every parameter (``s`` and the momentum buffer ``b`` start at 0)::

            g = grad + weight_decay * p
            s = alpha * s + (1 - alpha) * g * g
            a = sqrt(s) + eps
            b = momentum * b + g / a;  p = p - lr * b     (with momentum)
            p = p - lr * g / a                           (without)
        """
        self.step_count += 1
        for k, p in enumerate(self.params):
            xp, dtype = array_module(p.value), p.value.dtype.type
            g = self._grad(k, p)
            state = self._state(k, p)
            if not state:  # the first step: s_0 = b_0 = 0
                state.update({n: xp.zeros_like(p.value) for n in self.buffer_names(self.hyper())})
            s, tmp = state["square_avg"], self._tmp(k, "update", p)
            s *= dtype(self.alpha)
            xp.multiply(g, g, out=tmp)
            tmp *= dtype(1 - self.alpha)
            s += tmp
            xp.sqrt(s, out=tmp)
            tmp += dtype(self.eps)
            xp.divide(g, tmp, out=tmp)  # g / a
            if self.momentum:
                buf = state["momentum_buffer"]
                buf *= dtype(self.momentum)
                buf += tmp
                xp.multiply(buf, dtype(self.lr), out=tmp)
            else:
                tmp *= dtype(self.lr)
            p.value -= tmp


# ----------------------------------------------------------------------------------------------
# building from a spec; saving a state with numpy.savez
# ----------------------------------------------------------------------------------------------

#: type name -> class; the names are numnet.core.names.OPTIMIZERS (a test holds them equal)
CLASSES: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop)}


def check_spec(spec: Mapping[str, Any], where: str = "optimizer") -> dict[str, Any]:
    """Check an optimiser spec such as ``{"type": "adam", "betas": [0.9, 0.999]}`` without
    any parameters; return a copy with every default filled in (``lr`` only when the spec
    gives it: the caller may give it to :func:`build`) and ``betas`` a list. An unknown type
    or key, or a bad value, raises a one-line :class:`OptimizerError` that starts with
    ``where`` and says what would be accepted ("did you mean ...")."""
    kind = check_type(where, spec, OPTIMIZERS)
    hyper = CLASSES[kind].check_hyper(where, {k: v for k, v in spec.items() if k != "type"})
    if "betas" in hyper:
        hyper["betas"] = list(hyper["betas"])
    return {"type": kind, **hyper}


def build(params: Iterable[Parameter], spec: Mapping[str, Any], lr: float | None = None,
          where: str = "optimizer") -> Optimizer:
    """The optimiser ``spec`` describes (see :func:`check_spec`), on ``params``. ``lr`` is the
    caller's learning rate, for a spec without one; given in both places it must agree."""
    hyper = check_spec(spec, where)
    kind = hyper.pop("type")
    if lr is not None:
        lr = _nonnegative(where, "lr", lr)
        if "lr" in hyper and hyper["lr"] != lr:
            raise OptimizerError(f"{where}: lr is given twice, {hyper['lr']!r} in the spec and "
                                 f"{_show(lr)} by the caller")
        hyper["lr"] = lr
    if "lr" not in hyper and CLASSES[kind].defaults()["lr"] is inspect.Parameter.empty:
        raise OptimizerError(f"{where}: {kind!r} needs lr (in the spec or from the caller)")
    return CLASSES[kind](params, **hyper)


def state_to_arrays(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A :meth:`Optimizer.state_dict` as flat named arrays for ``numpy.savez``: ``type``,
    ``step``, ``num_params``, ``hyper.<name>`` and ``state.<k>.<buffer>``."""
    out = {"type": np.array(state["type"]), "step": np.array(state["step"]),
           "num_params": np.array(len(state["state"]))}
    out.update({f"hyper.{name}": np.array(v) for name, v in state["hyper"].items()})
    for k, entry in enumerate(state["state"]):
        out.update({f"state.{k}.{name}": np.asarray(a) for name, a in entry.items()})
    return out


def state_from_arrays(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`state_to_arrays` (e.g. on what ``numpy.load`` returns)."""
    def plain(a: Any) -> Any:
        a = np.asarray(a)
        return a.item() if a.ndim == 0 else a.tolist()

    missing = [k for k in ("type", "step", "num_params") if k not in arrays]
    if missing:
        raise OptimizerError(f"optimiser state arrays: missing {', '.join(missing)}")
    state: list[dict[str, np.ndarray]] = [{} for _ in range(int(arrays["num_params"]))]
    hyper = {}
    for key in arrays:
        if key.startswith("hyper."):
            hyper[key.removeprefix("hyper.")] = plain(arrays[key])
        elif key.startswith("state."):
            _, k, name = key.split(".", 2)
            if not k.isdigit() or int(k) >= len(state):
                raise OptimizerError(f"optimiser state arrays: {key!r} names no parameter")
            state[int(k)][name] = np.asarray(arrays[key])
        elif key not in ("type", "step", "num_params"):
            raise OptimizerError(f"optimiser state arrays: unknown key {key!r}")
    return {"type": plain(arrays["type"]), "step": plain(arrays["step"]), "hyper": hyper,
            "state": state}
