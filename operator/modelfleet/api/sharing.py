"""What frozen parsed models share, so that a fleet's resources cost memory in proportion
to what they say: a third of a parsed resource at 1,000 pools was pydantic's own records
(a set of field names per instance, a copy of every default)."""

from __future__ import annotations

from pydantic import BaseModel

# Which fields were set, one record per distinct set of names, shared by every model that
# has it: pydantic gives each instance its own set (about a third of a parsed resource's
# memory at 1,000 pools), and frozen models never add to it (a copy gets its own).
_SHARED_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
_SHARED_FIELDS_SETS_MAX = 10_000  # distinct sets kept; beyond that a model keeps its own
_LAST_SHARED: dict[type, set[str]] = {}


def share_fields_set(model: BaseModel) -> None:
    """Point `model`'s fields-set record at the shared one with the same names."""
    own = model.__pydantic_fields_set__
    # Most models of a class set the same fields: the last one shared is tried first.
    shared = _LAST_SHARED.get(type(model))
    if shared is None or shared != own:
        key = frozenset(own)
        shared = _SHARED_FIELDS_SETS.get(key)
        if shared is None:
            if len(_SHARED_FIELDS_SETS) >= _SHARED_FIELDS_SETS_MAX:
                return
            shared = _SHARED_FIELDS_SETS[key] = own
        _LAST_SHARED[type(model)] = shared
    object.__setattr__(model, "__pydantic_fields_set__", shared)


# A field left to its default gets a new default object in every model (pydantic copies
# defaults); frozen, one is as good as another, so every model left to the default of a
# field shares the first one (a variant carried half a dozen: step policies, templates...).
_SHARED_DEFAULTS: dict[tuple[type, str], BaseModel] = {}
_MODEL_DEFAULT_FIELDS: dict[type, tuple[str, ...]] = {}


def _model_default_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields whose default is a model (their factory called once per class, not per
    instance: most classes, the statuses built every cycle among them, have none)."""
    found = _MODEL_DEFAULT_FIELDS.get(cls)
    if found is None:
        found = _MODEL_DEFAULT_FIELDS[cls] = tuple(
            name
            for name, info in cls.model_fields.items()
            if not info.is_required()
            and isinstance(info.get_default(call_default_factory=True), BaseModel)
        )
    return found


def share_records(model: BaseModel) -> None:
    """Point `model`'s fields-set record, and each sub-model it holds as a field's default,
    at the shared ones. One call per model built (tens of thousands of status entries a
    refresh at 1,000 pools); most classes, the statuses among them, have no model default."""
    cls = type(model)
    shared = _LAST_SHARED.get(cls)
    # share_fields_set's common case, inline: the call was a third of building a status entry.
    if shared is not None and shared == model.__pydantic_fields_set__:
        object.__setattr__(model, "__pydantic_fields_set__", shared)
    else:
        share_fields_set(model)
    names = _MODEL_DEFAULT_FIELDS.get(cls)
    if names is None:
        names = _model_default_fields(cls)
    if not names:
        return
    fields_set = model.__pydantic_fields_set__
    values = model.__dict__
    for name in names:
        if name in fields_set:
            continue
        value = values[name]
        key = (type(model), name)
        shared = _SHARED_DEFAULTS.get(key)
        if shared is None:
            _SHARED_DEFAULTS[key] = value
        elif shared is not value and shared == value:
            values[name] = shared
