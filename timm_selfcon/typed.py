"""The typed-config building blocks every part of the package shares: :class:`StrictModel` and checked numbers.

A config section (``TrainConfig``, ``EvalConfig``...) and a training method's options (its ``Options`` model, in
the method's own file under ``timm_selfcon.methods``) are :class:`StrictModel` subclasses: pydantic v2 models that
refuse unknown keys, check ranges (``gt=0``), and report a bad value as one :class:`~timm_selfcon.errors.UserInputError`
line naming the key, the rule and the value. This module imports only pydantic and the package's errors, so the
methods (which must not import ``config``) can declare their options with the same types.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError

from .errors import UserInputError

__all__ = ["Float", "NonNegativeFloat", "NonNegativeInt", "PositiveFloat", "PositiveInt", "StrictModel", "UnitFloat",
           "describe_error"]


def _number(value: Any) -> Any:
    """Refuse booleans where a number is expected (pydantic would read ``true`` as 1)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got true/false")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


Float = Annotated[float, BeforeValidator(_number), AfterValidator(_finite)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
UnitFloat = Annotated[Float, Field(ge=0, le=1)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]


def describe_error(error: Mapping[str, Any], prefix: str = "") -> str:
    """One pydantic error as ``path: message (got value)``; ``prefix`` goes before the path (``method_kwargs.``)."""
    path = prefix + ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = "" if error["type"] == "value_error" else f" (got {error['input']!r})"
    return f"{path}: {message}{shown}" if path else f"{message}{shown}"


class StrictModel(BaseModel):
    """A config section: unknown keys refused, values checked again when assigned."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise UserInputError("; ".join(describe_error(e) for e in err.errors())) from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()
