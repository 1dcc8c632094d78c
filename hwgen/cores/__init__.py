"""Registry of the generators: ``python -m hwgen cores`` lists it."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from .attention import AttentionHead
from .if_neuron import IFPopulation
from .mt_neuron import MTPopulation
from .si_exp import SIExp
from .si_norm import SINorm
from .softmax import SpikingSoftmax

__all__ = ["CORES", "CoreParameter", "core_class", "core_parameters", "make_core",
           "parse_params"]

#: CLI name -> component class. Constructors take keyword-only parameters with defaults.
CORES = {
    "if": IFPopulation,
    "mt": MTPopulation,
    "si_exp": SIExp,
    "si_norm": SINorm,
    "softmax": SpikingSoftmax,
    "attention": AttentionHead,
}


@dataclass(frozen=True)
class CoreParameter:
    name: str
    default: object
    doc: str
    annotation: str = ""  #: the constructor's type annotation, as text


def core_class(name: str):
    try:
        return CORES[name]
    except KeyError:
        raise ValueError(f"unknown core {name!r}; known cores: {', '.join(sorted(CORES))}") from None


def _param_docs(cls) -> dict[str, str]:
    """Parameter descriptions from the numpydoc ``Parameters`` section of the class docstring."""
    docs, current = {}, None
    lines = inspect.getdoc(cls).splitlines()
    try:
        start = lines.index("Parameters") + 2
    except ValueError:
        return docs
    for line in lines[start:]:
        if line and not line.startswith(" "):
            if " : " not in line:
                break
            names = line.split(" : ")[0]
            current = [n.strip() for n in names.split(",")]
            for n in current:
                docs[n] = ""
        elif current and line.strip():
            for n in current:
                docs[n] = (docs[n] + " " + line.strip()).strip()
    return docs


def core_parameters(name: str) -> list[CoreParameter]:
    cls = core_class(name)
    docs = _param_docs(cls)
    return [CoreParameter(p.name, p.default, docs.get(p.name, ""), _annotation(p))
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind is p.KEYWORD_ONLY]


def _annotation(p: inspect.Parameter) -> str:
    if p.annotation is p.empty:
        return ""
    # Text under ``from __future__ import annotations``, a type otherwise.
    text = isinstance(p.annotation, str)
    return p.annotation if text else inspect.formatannotation(p.annotation)


def parse_params(name: str, assignments: list[str]) -> dict[str, object]:
    """Turn ``["neurons=8", "v_init=none"]`` into keyword arguments for core ``name``."""
    known = {p.name: p for p in core_parameters(name)}
    params = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--param takes NAME=VALUE, not {item!r}")
        if key not in known:
            raise ValueError(f"core {name!r} has no parameter {key!r}; its parameters: "
                             f"{', '.join(known)}")
        if key in params:
            raise ValueError(f"parameter {key} is given twice ({item!r}); give it once")
        params[key] = _parse_value(key, text, known[key])
    return params


def _parse_value(key: str, text: str, parameter: CoreParameter):
    """Parse by the type of the default: bool, float or str; integers (or none) otherwise. A
    parameter whose default is None and that takes text (a table path) keeps the text."""
    default = parameter.default
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"parameter {key} takes true or false, not {text!r}")
    if isinstance(default, str):
        return text
    if text.lower() == "none":
        return None
    if default is None:
        if "str" in (part.strip() for part in parameter.annotation.split("|")):
            return text  # a path, even one that reads as a number ("12")
        # No type to go by (e.g. an optional range): integer, number or text.
        for parse in (_parse_int, float):
            try:
                return parse(text)
            except ValueError:
                pass
        return text
    try:
        return float(text) if isinstance(default, float) else _parse_int(text)
    except ValueError:
        kind = "a number" if isinstance(default, float) else "an integer"
        raise ValueError(f"parameter {key} takes {kind}, not {text!r}") from None


def _parse_int(text: str) -> int:
    """A decimal integer, leading zeros allowed ("08"), or one with a 0x, 0o or 0b prefix."""
    try:
        return int(text)
    except ValueError:
        return int(text, 0)


def make_core(name: str, params: dict[str, object] | None = None):
    return core_class(name)(**(params or {}))
