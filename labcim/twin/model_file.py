"""Model files: a simulated device model fitted to a chip, as YAML (``sim://...?model=F``).

Written by ``labcim calibrate`` (`labcim.twin.calibrate`), read by `load_model` and by
``sim://PRESET?model=PATH.yaml`` (`labcim.connection`).  Format (docs/replay.md)::

    format: labcim-model
    version: 1
    device_type: pcm                 # must match the chip preset it is used with
    preset: pcm-hermes               # the preset it derives from
    model_params: {prog_noise_scale: 1.48, drift_nu_scale: 1.31, ...}
    periphery: {col_gain_std: 0.0102, ...}
    provenance: {created: ..., sources: [...], fits: {...}}   # free-form, not used

``model_params`` are fields of ``mock_hw.pcm.PCMParams`` / ``mock_hw.rram.RRAMParams``
and ``periphery`` fields of ``mock_hw.core.Periphery``; unknown keys are errors that name
them, so a typo never passes silently.  Loaded with
`labcim.bounded_yaml.load_bounded` within the limits of a campaign file
(size, nesting, alias expansion), so no model file can make loading slow or large.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from labcim.bounded_yaml import (
    Limits,
    YAMLLimitError,
    load_bounded,
    one_line,
    read_bounded,
)
from labcim.output_files import first_line, write_file
from mock_hw.chip import PRESETS
from mock_hw.core import Periphery
from mock_hw.pcm import PCMParams
from mock_hw.rram import RRAMParams

MODEL_FORMAT = "labcim-model"
MODEL_VERSION = 1
PARAMS = {"pcm": PCMParams, "rram": RRAMParams}
"""Device-parameter dataclass of each device type."""
LIMITS = Limits()
"""Bounds on a model file: those of a campaign file (`labcim.campaign.schema.LIMITS`)."""
_KEYS = {"format", "version", "device_type", "preset", "model_params", "periphery", "provenance"}


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the bad field."""


@dataclass(frozen=True)
class ModelFile:
    """A simulated device model: what differs from a preset's defaults.

    Attributes
    ----------
    preset : str
        Chip preset the model derives from (``mock_hw.chip.PRESETS``).
    model_params : dict
        Device-model parameters (``PCMParams`` / ``RRAMParams`` fields).
    periphery : dict
        Periphery parameters (``mock_hw.core.Periphery`` fields).
    provenance : dict
        Where the numbers come from (source files, run uids, fit diagnostics).
    """

    preset: str
    model_params: dict[str, Any] = field(default_factory=dict)
    periphery: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def device_type(self) -> str:
        """``"pcm"`` or ``"rram"``, from the preset."""
        return PRESETS[self.preset]["device_type"]

    def chip_options(self) -> dict[str, dict[str, Any]]:
        """Keywords of ``mock_hw.chip.Chip.from_preset``: ``model_params``, ``periphery``."""
        return {"model_params": dict(self.model_params), "periphery": dict(self.periphery)}

    def to_dict(self) -> dict[str, Any]:
        """The YAML document (plain Python values)."""
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "device_type": self.device_type,
            "preset": self.preset,
            "model_params": dict(self.model_params),
            "periphery": dict(self.periphery),
            "provenance": dict(self.provenance),
        }


def check_model(data: Any, where: str = "model") -> ModelFile:
    """A `ModelFile` from a parsed document, every field checked.

    Raises
    ------
    ModelFileError
        Naming ``where`` and each bad or unknown key.
    """
    if not isinstance(data, Mapping):
        raise ModelFileError(f"{where}: not a labcim model file (expected a YAML mapping)")
    if data.get("format") != MODEL_FORMAT or data.get("version") != MODEL_VERSION:
        raise ModelFileError(
            f"{where}: not a labcim model file of version {MODEL_VERSION} "
            f"(format: {data.get('format')!r}, version: {data.get('version')!r})"
        )
    errors = [
        f"{where}: unknown key {k!r}; allowed: {sorted(_KEYS)}" for k in data if k not in _KEYS
    ]
    preset = data.get("preset")
    if preset not in PRESETS:
        errors.append(f"{where}: preset = {preset!r}; allowed: {sorted(PRESETS)}")
    else:
        device_type = PRESETS[preset]["device_type"]
        if data.get("device_type", device_type) != device_type:
            errors.append(
                f"{where}: device_type = {data['device_type']!r} but preset {preset!r} "
                f"is {device_type!r}"
            )
        errors += _check_fields(where, "model_params", data, PARAMS[device_type])
    errors += _check_fields(where, "periphery", data, Periphery)
    if not isinstance(data.get("provenance", {}), Mapping):
        errors.append(f"{where}: provenance must be a mapping")
    if errors:
        raise ModelFileError("\n".join(errors))
    return ModelFile(
        preset,
        dict(data.get("model_params") or {}),
        dict(data.get("periphery") or {}),
        dict(data.get("provenance") or {}),
    )


def _check_fields(where: str, key: str, data: Mapping[str, Any], cls: type) -> list[str]:
    """Messages for a section that is not a mapping of ``cls``'s numeric fields."""
    section = data.get(key) or {}
    if not isinstance(section, Mapping):
        return [f"{where}: {key} must be a mapping"]
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    errors = []
    for name, value in section.items():
        if name not in fields_:
            errors.append(f"{where}: {key}.{name} is not a {cls.__name__} field")
        elif fields_[name].type in ("bool", bool):
            if not isinstance(value, bool):
                errors.append(f"{where}: {key}.{name} = {value!r} must be true or false")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(f"{where}: {key}.{name} = {value!r} must be a number")
        elif allowed := _out_of_range(name, value):
            errors.append(f"{where}: {key}.{name} = {value!r} must be {allowed}")
    return errors


SIGNED_KNOBS = frozenset({"asym_mean", "adc_inl_odd_mean"})
"""Knobs that may be negative (a mean offset); every other knob is a scale, a spread, a
rate, a time or a conductance, >= 0, and ``*_fraction`` / ``*_share`` knobs are <= 1."""


def _out_of_range(name: str, value: float) -> str:
    """What ``value`` of knob ``name`` must be, if it is not ("" if it is fine)."""
    if not math.isfinite(value):
        return "finite"
    if name in SIGNED_KNOBS:
        return ""
    if name.endswith(("_fraction", "_share")):
        return "in [0, 1]" if not 0 <= value <= 1 else ""
    return ">= 0" if value < 0 else ""


def load_model(path: str | PathLike[str]) -> ModelFile:
    """Read and check the model file at ``path``.

    Raises
    ------
    ModelFileError
        The file cannot be read, is not YAML, or is not a valid model file (naming the
        bad fields).
    """
    path = Path(path)
    try:
        data = load_bounded(read_bounded(path, LIMITS), LIMITS)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror})") from None
    except YAMLLimitError as exc:
        raise ModelFileError(f"{path}: beyond the limits of a model file: {exc}") from None
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{path}: not valid YAML: {one_line(exc)}") from None
    return check_model(data, str(path))


def save_model(model: ModelFile, path: str | PathLike[str]) -> None:
    """Write ``model`` to ``path`` as YAML (keys in the documented order).

    Raises
    ------
    ForeignFileError
        ``path`` holds a file that is not a labcim model file (it is left as it is).
    """
    text = yaml.safe_dump(model.to_dict(), sort_keys=False)  # "format: ..." first
    write_file(path, lambda temporary: temporary.write_text(text), _model_file, "model file")


def _model_file(path: Path) -> bool:
    """Whether ``path`` starts as the model files `save_model` writes."""
    return first_line(path) == f"format: {MODEL_FORMAT}"
