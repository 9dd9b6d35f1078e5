"""What every config section shares: strict frozen models, seconds, paths against the file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Section(BaseModel):
    # strict: YAML already types scalars; `port: "1883"` or `apn: 1234` is a mistake
    # worth reporting rather than guessing.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def resolve_path(value: str, info: ValidationInfo) -> str:
    path = Path(value)
    base_dir = (info.context or {}).get("base_dir")
    if not path.is_absolute() and isinstance(base_dir, Path):
        path = base_dir / path
    return str(path)
