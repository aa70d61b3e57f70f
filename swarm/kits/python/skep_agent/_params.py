"""Mapping a request's params onto a Python function's signature."""
import inspect

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class ParamsMismatch(Exception):
    """The params do not fit the signature; carries what is missing and what was not expected."""

    def __init__(self, message, missing=(), unexpected=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)


def bind(signature, params):
    """Return (args, kwargs) for a call, or raise ParamsMismatch naming the difference."""
    if params is None:
        args, kwargs = [], {}
    elif isinstance(params, dict):
        args, kwargs = [], params
    elif isinstance(params, list):
        args, kwargs = params, {}
    else:
        raise ParamsMismatch("params must be an object or an array")
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        raise _explain(signature, args, kwargs) from None
    return args, kwargs


def _explain(signature, args, kwargs):
    params = list(signature.parameters.values())
    var_pos = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    positional = [p for p in params if p.kind in _POSITIONAL]
    by_name = {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    given = {p.name for p in positional[: len(args)]} | set(kwargs)
    unexpected = []
    if not var_pos and len(args) > len(positional):
        unexpected += [f"#{i}" for i in range(len(positional), len(args))]
    if not var_kw:
        unexpected += [k for k in kwargs if k not in by_name]
    missing = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and p.name not in given
    ]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing))
    if unexpected:
        parts.append("unexpected " + ", ".join(unexpected))
    return ParamsMismatch("invalid params: " + ("; ".join(parts) or "they do not fit"), missing, unexpected)
