"""The run spec: a TOML file validated by a pydantic model built after plugins load (docs/specs.md).

Core owns ``[run]``, ``[requires]``, ``[executor]``, ``[sweep]`` and ``[[gates]]`` (decision
gates, :mod:`dhs_core.gates`). Every other top-level section is declared by a stage plugin
(:class:`dhs_core.stages.Section`). A *component slot* — a section or field typed
``Slot(kind)`` — becomes a union of every registered component of that kind, discriminated by
``name``; each member is the component's ``Config`` plus ``name: Literal[<its name>]``. Errors
name the file, the dotted path and the valid choices.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Mapping, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo

from dhs_core import plugins
from dhs_core.errors import SpecError
from dhs_core.gates import Gate, headline_stage


@dataclass(frozen=True)
class Slot:
    """Marks a spec section or config field as "one registered component of ``kind``".

    Use as a :class:`~dhs_core.stages.Section` type, or inside a config model as
    ``loss: Annotated[Any, Slot("loss")] = {"name": "bce"}``.
    """

    kind: str
    many: bool = False


class RunSection(BaseModel):
    """``[run]``: identity, seed and output directory of a run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # run name; also the default output directory runs/<name>: a plain file name
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    # master seed; every stage and task seed is derived from it and a name (dhs_core.seeds)
    seed: int = 0
    # output directory (relative paths are relative to the working directory)
    out_dir: str | None = None
    # lock file written by `dhs lock` (relative to the spec file); a mismatch refuses the run
    lock: str | None = None
    # free-text description copied into provenance and the model card
    description: str = ""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if value in {".", ".."}:
            raise ValueError(f"{value!r} is not a run name: it would write the run into the current or "
                             "parent directory; use a plain file name like 'quickstart'")
        return value


def _check_specifiers(value: dict[str, str]) -> dict[str, str]:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    for dist, spec in value.items():
        try:
            SpecifierSet(spec)
        except InvalidSpecifier:
            raise ValueError(f"{dist} = {spec!r} is not a PEP 440 version specifier (e.g. '>=0.1,<0.2')") from None
    return value


# ------------------------------------------------------------------------------------------------
# Slot resolution
# ------------------------------------------------------------------------------------------------

_variant_cache: dict[tuple[int, str], type[BaseModel]] = {}


def _variant(comp: plugins.Component) -> type[BaseModel]:
    key = (id(comp.Config), comp.name)
    if key not in _variant_cache:
        base = resolve_model(comp.Config)
        _variant_cache[key] = create_model(
            f"{comp.kind}:{comp.name}",
            __base__=base,
            __doc__=comp.summary or base.__doc__,
            name=(Literal[comp.name], Field(description=f"{comp.kind} {comp.name!r} ({comp.distribution})")),
        )
    return _variant_cache[key]


def slot_type(kind: str, many: bool = False) -> Any:
    comps = plugins.components(kind)
    variants = [_variant(c) for c in comps.values()]
    if not variants:
        tp: Any = Annotated[dict, Field(description=f"no {kind} is installed")]
    elif len(variants) == 1:
        tp = variants[0]
    else:
        tp = Annotated[Union[tuple(variants)], Field(discriminator="name")]
    return list[tp] if many else tp


def _slot_of(finfo: FieldInfo) -> Slot | None:
    return next((m for m in finfo.metadata if isinstance(m, Slot)), None)


def resolve_type(tp: Any) -> Any:
    if isinstance(tp, Slot):
        return slot_type(tp.kind, tp.many)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return resolve_model(tp)
    return tp


def resolve_model(cls: type[BaseModel]) -> type[BaseModel]:
    """``cls`` with every ``Slot`` field (at any depth) replaced by its component union."""
    changed: dict[str, Any] = {}
    for fname, finfo in cls.model_fields.items():
        slot = _slot_of(finfo)
        ann = finfo.annotation
        if slot is not None:
            new = slot_type(slot.kind, slot.many)
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            new = resolve_model(ann)
            if new is ann:
                continue
        elif get_origin(ann) is Union and any(isinstance(a, type) and issubclass(a, BaseModel) for a in get_args(ann)):
            args = tuple(resolve_model(a) if isinstance(a, type) and issubclass(a, BaseModel) else a for a in get_args(ann))
            if args == get_args(ann):
                continue
            new = Union[args]
        else:
            continue
        info = copy.copy(finfo)
        info.metadata = [m for m in finfo.metadata if not isinstance(m, Slot)]
        info.annotation = new
        info.validate_default = True
        if slot is not None and len(plugins.components(slot.kind)) > 1 and not slot.many:
            info.discriminator = "name"
        changed[fname] = (new, info)
    if not changed:
        return cls
    return create_model(cls.__name__, __base__=cls, __doc__=cls.__doc__, **changed)


# ------------------------------------------------------------------------------------------------
# The spec model
# ------------------------------------------------------------------------------------------------


def _stage_sections() -> dict[str, tuple[str, Any]]:
    """section name -> (owning stage, Section) for every installed stage."""
    owned: dict[str, tuple[str, Any]] = {}
    for name, comp in plugins.components("stage").items():
        for sec, section in comp.impl.sections.items():
            if sec in owned and owned[sec][1].type != section.type:
                raise plugins.PluginError(
                    f"stages {owned[sec][0]!r} and {name!r} both declare spec section [{sec}] with different types"
                )
            owned.setdefault(sec, (name, section))
    return owned


def build_spec_model() -> type[BaseModel]:
    """The run-spec model for the plugins installed now."""
    fields: dict[str, Any] = {
        "run": (RunSection, Field(description="run identity, seed and output directory")),
        "requires": (dict[str, str], Field(default_factory=dict, description="PEP 440 pins checked before any work")),
        "executor": (
            slot_type("executor"),
            Field(default={"name": "local"}, validate_default=True, description="where a stage's tasks run"),
        ),
        "sweep": (dict[str, Any], Field(default_factory=dict, description=(
            "grid over dotted spec paths (path = [values]), or named points "
            "(points = [{ name, set = { path = value } }]) with an optional baseline point name"))),
        "gates": (list[Gate], Field(default_factory=list, description=(
            "decision gates checked when the run ends: metric, op, value (e.g. evaluate.test_auc >= 0.993)"))),
    }
    for sec, (stage, section) in _stage_sections().items():
        if sec in fields:
            raise plugins.PluginError(f"stage {stage!r} declares the reserved spec section [{sec}]")
        tp = resolve_type(section.type) | None
        list_as = getattr(section, "list_as", None)
        if list_as:
            # [[section]] (a list of tables) is one component holding the list as its steps
            tp = Annotated[tp, BeforeValidator(lambda v, _n=list_as: {"name": _n, "steps": v} if isinstance(v, list) else v)]
        fields[sec] = (tp, Field(default=None, description=section.description or f"section of stage {stage!r}"))

    model = create_model(
        "RunSpec",
        __config__=ConfigDict(frozen=True, extra="forbid"),
        __validators__={"_requires": field_validator("requires")(classmethod(lambda cls, v: _check_specifiers(v)))},
        **fields,
    )
    return model


def json_schema() -> dict[str, Any]:
    """JSON Schema of the run spec with every installed plugin (``dhs schema``)."""
    schema = build_spec_model().model_json_schema()
    schema["title"] = "Dark Halo Scope run spec"
    return schema


# ------------------------------------------------------------------------------------------------
# Loading, overrides, validation errors
# ------------------------------------------------------------------------------------------------


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such spec file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a UTF-8 text file") from None


def parse_value(text: str) -> Any:
    """``--set`` value: a TOML value when it parses as one (``3``, ``[20, 32]``, ``true``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    if not all(keys):
        raise SpecError(f"{dotted!r} is not a dotted spec path like 'train.epochs'")
    cur: Any = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(cur, list):
            if not key.isdigit() or int(key) >= len(cur):
                raise SpecError(f"{'.'.join(keys[: i + 1])!r}: index {key!r} is not in a list of {len(cur)}")
            cur = cur[int(key)]
            continue
        nxt = cur.get(key)
        if nxt is None:
            nxt = cur[key] = {}
        elif not isinstance(nxt, (dict, list)):
            raise SpecError(f"{'.'.join(keys[: i + 1])!r} is a value, not a table; cannot set {dotted!r}")
        cur = nxt
    last = keys[-1]
    if isinstance(cur, list):
        if not last.isdigit() or int(last) >= len(cur):
            raise SpecError(f"{dotted!r}: index {last!r} is not in a list of {len(cur)}")
        cur[int(last)] = value
    else:
        cur[last] = value


def _walk_data(data: Any, loc: tuple[Any, ...]) -> tuple[str, ...]:
    """Dotted path of a pydantic error location, without discriminator tags."""
    out: list[str] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part not in cur and cur.get("name") == part:
            continue  # the union tag pydantic inserts for a discriminated member
        out.append(str(part))
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            cur = cur[part]
        else:
            cur = None
    return tuple(out)


def _kind_at(path: tuple[str, ...], data: Mapping[str, Any]) -> str | None:
    """The component kind of the slot at ``path`` (for 'valid choices' messages)."""
    if not path:
        return None
    secs = _stage_sections()
    if path[0] == "executor":
        tp: Any = Slot("executor")
    elif path[0] in secs:
        tp = secs[path[0]][1].type
    else:
        return None
    cur: Any = data.get(path[0])
    for part in path[1:]:
        if isinstance(tp, Slot):
            if tp.many:
                if not part.isdigit() or not isinstance(cur, list) or int(part) >= len(cur):
                    return None
                tp, cur = Slot(tp.kind), cur[int(part)]
                continue
            comp = plugins.components(tp.kind).get(cur.get("name")) if isinstance(cur, dict) else None
            if comp is None:
                return None
            tp = comp.Config
        if not (isinstance(tp, type) and issubclass(tp, BaseModel)) or part not in tp.model_fields:
            return None
        finfo = tp.model_fields[part]
        tp = _slot_of(finfo) or finfo.annotation
        cur = cur.get(part) if isinstance(cur, dict) else None
    return tp.kind if isinstance(tp, Slot) else None


def format_errors(exc: ValidationError, data: Mapping[str, Any], source: str, model: type[BaseModel]) -> str:
    lines = []
    for err in exc.errors():
        path = _walk_data(data, err["loc"])
        dotted = ".".join(path) or "(top level)"
        if len(path) > 1 and path[0] == "gates" and path[1].isdigit():
            # a gate is named as the list entry it is, as the other gate checks name it
            dotted = f"gates[{path[1]}]" + "".join(f".{p}" for p in path[2:])
        etype = err["type"]
        is_name = etype == "literal_error" and bool(path) and path[-1] == "name"
        if etype == "union_tag_invalid" or is_name:
            kind_path = path[:-1] if is_name else path
            kind = _kind_at(kind_path, data) or "component"
            valid = sorted(plugins.components(kind)) if kind != "component" else []
            got = err.get("input") if etype == "literal_error" else (err.get("ctx") or {}).get("tag")
            lines.append(
                f"{source}: {'.'.join(kind_path)}.name: unknown {kind} {got!r}; valid choices: "
                f"{', '.join(valid) or '(none installed)'}"
            )
        elif etype == "union_tag_not_found":
            kind = _kind_at(path, data) or "component"
            valid = sorted(plugins.components(kind)) if kind != "component" else []
            lines.append(f"{source}: {dotted}: missing 'name' selecting {plugins.with_article(kind)}; valid choices: {', '.join(valid)}")
        elif etype == "extra_forbidden":
            if len(path) == 1:
                known = sorted(model.model_fields)
                lines.append(
                    f"{source}: unknown section [{dotted}]; known sections: {', '.join(known)} "
                    "(a section belongs to an installed stage plugin)"
                )
            else:
                lines.append(f"{source}: {dotted}: unknown field {path[-1]!r}")
        elif etype == "missing":
            lines.append(f"{source}: {dotted}: required field is missing")
        else:
            got = err.get("input")
            # quote scalars only: a model-level check would otherwise echo the whole table
            shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            lines.append(f"{source}: {dotted}: {err['msg']}{shown}")
    return "\n".join(dict.fromkeys(lines))


@dataclass
class SpecPoint:
    """One validated point of a spec (the whole spec when there is no sweep)."""

    spec: BaseModel
    data: dict[str, Any]
    assignments: dict[str, Any]
    name: str | None = None  # a named sweep point's name (its run directory's suffix)

    @property
    def sha256(self) -> str:
        return spec_sha256(self.spec)


def resolved_dict(spec: BaseModel) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def spec_sha256(spec: BaseModel) -> str:
    canon = json.dumps(resolved_dict(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def _validate(model: type[BaseModel], data: dict[str, Any], source: str) -> BaseModel:
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, data, source, model)) from None
    _check_finite(spec, source)
    _check_required_sections(spec, source)
    _check_gates(spec, source)
    return spec


def _allows_nonfinite(model: BaseModel, name: str) -> bool:
    extra = model.__class__.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and extra.get("finite") is False


def _check_finite(spec: BaseModel, source: str) -> None:
    """Every float in a spec is finite — a learning rate of inf or a tier weight of nan is never
    what was meant — unless its field says ``Field(..., json_schema_extra={"finite": False})``.
    One walk over the validated spec covers every section, third-party plugins' included."""
    bad: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, float):
            if not math.isfinite(value):
                bad.append(f"{path} = {value}")
        elif isinstance(value, BaseModel):
            for name in value.__class__.model_fields:
                if not _allows_nonfinite(value, name):
                    walk(getattr(value, name), f"{path}.{name}" if path else name)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(spec, "")
    if bad:
        raise SpecError(f"{source}: {'; '.join(bad)}: must be a finite number (not inf or nan)")


def enabled_stages(spec: BaseModel) -> list[plugins.Component]:
    out = []
    for comp in plugins.components("stage").values():
        trig = comp.impl.trigger
        if trig is None or getattr(spec, trig, None) not in (None, []):
            out.append(comp)
    return out


def _check_required_sections(spec: BaseModel, source: str) -> None:
    for comp in enabled_stages(spec):
        for sec, section in comp.impl.sections.items():
            if section.required and getattr(spec, sec, None) is None:
                raise SpecError(
                    f"{source}: missing required section [{sec}] (stage {comp.name!r} runs because "
                    f"[{comp.impl.trigger}] is present and needs it)"
                )


def _check_gates(spec: BaseModel, source: str) -> None:
    """A headline-metric gate names a stage this spec enables: a gate on a stage that never runs
    could only ever be "missing", which is a spec mistake to catch before any work."""
    enabled = [c.name for c in enabled_stages(spec)]
    for i, gate in enumerate(getattr(spec, "gates", None) or []):
        stage = headline_stage(gate.metric)
        if stage is not None and stage not in enabled:
            raise SpecError(
                f"{source}: gates[{i}].metric = {gate.metric!r}: {stage!r} is not a stage this spec enables; "
                f"a headline metric is '<stage>.<key>' with stage one of: {', '.join(enabled) or '(none)'} "
                "(or name a JSON file: '<path>.json:<key.path>')"
            )


def _override_value(model: type[BaseModel], data: dict[str, Any], dotted: str, text: str, source: str) -> None:
    """Apply ``dotted=text`` typed by the schema: try the TOML reading, then the plain string."""
    candidates = [parse_value(text)]
    if candidates[0] != text:
        candidates.append(text)
    last_err: SpecError | None = None
    for value in candidates:
        trial = copy.deepcopy(data)
        set_path(trial, dotted, value)
        try:
            model.model_validate(trial)
        except ValidationError as exc:
            bad_here = any(_walk_data(trial, e["loc"])[: len(dotted.split("."))] == tuple(dotted.split(".")) for e in exc.errors())
            if bad_here:
                # report why the TOML reading failed (``lr = nan``, an unknown executor name):
                # the plain-string fallback only adds "should be a valid dictionary/number"
                last_err = last_err or SpecError(format_errors(exc, trial, source, model))
                continue
        set_path(data, dotted, value)
        return
    assert last_err is not None
    raise last_err


_POINT_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,60}$")


def sweep_points(sweep: Mapping[str, Any], source: str = "<spec>") -> list[tuple[str | None, dict[str, Any]]]:
    """(name, assignments) of every sweep point, the baseline first.

    Two forms: axes (``path = [values]``, their Cartesian product, unnamed), or named points
    (``points = [{ name = "gen4", set = { "preprocess.annulus" = [20, 32] } }, ...]``) for an
    ablation matrix that is not a product. ``baseline`` names the point the others are compared
    with (paired tests in comparison.md); it runs first. Without it the first point is the
    baseline.
    """
    sweep = dict(sweep)
    points, baseline = sweep.pop("points", None), sweep.pop("baseline", None)
    if points is None:
        if baseline is not None:
            raise SpecError(f"{source}: [sweep] baseline names a point of [[sweep.points]]; a grid of axes has no "
                            "named points (its first point is the baseline)")
        return [(None, a) for a in expand_sweep(sweep)]
    if sweep:
        raise SpecError(f"{source}: [sweep] has both named points and axes ({', '.join(sweep)}); use one form")
    if not isinstance(points, list) or not points:
        raise SpecError(f"{source}: [sweep] points must be a non-empty list of {{ name = ..., set = {{ ... }} }}")
    out: list[tuple[str | None, dict[str, Any]]] = []
    for i, point in enumerate(points):
        if not isinstance(point, Mapping) or set(point) - {"name", "set"} or "name" not in point:
            raise SpecError(f"{source}: [sweep] points[{i}] must be {{ name = \"...\", set = {{ \"dotted.path\" = value }} }}"
                            f"; got {point!r}")
        name, assignments = point["name"], point.get("set") or {}
        if not isinstance(name, str) or not _POINT_NAME.match(name):
            raise SpecError(f"{source}: [sweep] points[{i}].name = {name!r}: 1-60 letters, digits, '_', '.', '-'")
        if not isinstance(assignments, Mapping):
            raise SpecError(f"{source}: [sweep] points[{i}].set must be a table of dotted path = value")
        out.append((name, dict(assignments)))
    names = [n for n, _ in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"{source}: [sweep] point names repeat: {', '.join(dupes)}")
    if baseline is not None:
        if baseline not in names:
            raise SpecError(f"{source}: [sweep] baseline = {baseline!r} is not a point; points: {', '.join(names)}")
        out.sort(key=lambda p: p[0] != baseline)  # stable: the baseline first, the rest in order
    return out


def expand_sweep(sweep: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the sweep axes, in spec order (last axis varies fastest)."""
    if not sweep:
        return [{}]
    keys = list(sweep)
    for k in keys:
        if not isinstance(sweep[k], list) or not sweep[k]:
            raise SpecError(f"[sweep] {k!r} must be a non-empty list of values")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]


def load_spec(
    spec: str | Path | Mapping[str, Any] | BaseModel,
    overrides: Iterable[str] = (),
) -> list[SpecPoint]:
    """Load, override, expand and validate a spec; every point is validated before any work."""
    if isinstance(spec, BaseModel):
        data = resolved_dict(spec)
        source = "<spec>"
    elif isinstance(spec, Mapping):
        data = copy.deepcopy(dict(spec))
        source = "<spec>"
    else:
        data = load_toml(spec)
        source = str(spec)
    model = build_spec_model()
    if "run" not in data:
        raise SpecError(f"{source}: missing required section [run] (with at least name = \"...\")")
    for ov in overrides:
        if "=" not in ov:
            raise SpecError(f"--set {ov!r}: expected KEY=VALUE, e.g. --set train.epochs=2")
        key, text = ov.split("=", 1)
        _override_value(model, data, key.strip(), text.strip(), f"{source} (--set {key.strip()})")
    sweep = data.pop("sweep", {}) or {}
    if not isinstance(sweep, dict):
        raise SpecError(f"{source}: [sweep] must be a table of dotted-path = [values]")
    points = []
    for point_name, assignment in sweep_points(sweep, source):
        pdata = copy.deepcopy(data)
        for key, value in assignment.items():
            try:
                set_path(pdata, key, value)
            except SpecError as exc:
                raise SpecError(f"{source}: [sweep] key {key!r} is not a spec path: {exc}") from None
        try:
            point = _validate(model, pdata, source)
        except SpecError as exc:
            if assignment:
                bad = [k for k in assignment if f": {k}: unknown field" in str(exc) or f"unknown section [{k.split('.')[0]}]" in str(exc)]
                if bad:
                    raise SpecError(f"{source}: [sweep] key {bad[0]!r} is not a spec path:\n{exc}") from None
                raise SpecError(f"{exc}\n(in sweep point {point_name or assignment})") from None
            raise
        points.append(SpecPoint(point, pdata, assignment, point_name))
    return points
