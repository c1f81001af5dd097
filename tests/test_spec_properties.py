"""Property tests of spec validation: invalid values raise ValueError and nothing else, valid values build.

Each field is described by a kind (integer range, number range, choice, ...) with two strategies: values
the field must accept and values it must reject. The ranges restate the documented limits of
bench/spec, so a change of a limit there has to be made here too.
"""

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.data.datasets import DATASETS
from bench.spec import FRAMEWORKS, MODELS, STRATEGIES, Profile, TimingSpec, TrainRecipe, get_profile, load_profile_file
from bench.spec.profile import PROFILE_FIELDS
from bench.spec.strategy import AttackParams

SETTINGS = settings(max_examples=75, deadline=None)

# Values of a type that no numeric or name field accepts.
OTHER_TYPES = st.one_of(
    st.text(max_size=5),
    st.just(()),
    st.just([]),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.tuples(st.integers()),
)


class IntKind:
    def __init__(self, minimum, maximum=None):
        self.minimum = minimum
        self.maximum = maximum

    def valid(self):
        return st.integers(self.minimum, self.maximum if self.maximum is not None else 10**12)

    def invalid(self):
        options = [
            OTHER_TYPES,
            st.none(),
            st.booleans(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(max_value=self.minimum - 1),
        ]
        if self.maximum is not None:
            options.append(st.integers(min_value=self.maximum + 1))
        return st.one_of(options)


class FloatKind:
    def __init__(self, minimum, maximum, *, min_inclusive=True, max_inclusive=True):
        self.minimum = minimum
        self.maximum = maximum
        self.min_inclusive = min_inclusive
        self.max_inclusive = max_inclusive

    def valid(self):
        return st.floats(
            self.minimum,
            self.maximum,
            exclude_min=not self.min_inclusive,
            exclude_max=not self.max_inclusive,
        ).filter(self._in_range)

    def invalid(self):
        return st.one_of(
            OTHER_TYPES,
            st.none(),
            st.booleans(),
            st.sampled_from([math.nan, math.inf, -math.inf]),
            st.floats(max_value=self.minimum).filter(lambda value: not self._in_range(value)),
            st.floats(min_value=self.maximum).filter(lambda value: not self._in_range(value)),
            st.integers(max_value=math.ceil(self.minimum) - 1),
            st.integers(min_value=math.floor(self.maximum) + 1),
        )

    def _in_range(self, value):
        above = value >= self.minimum if self.min_inclusive else value > self.minimum
        below = value <= self.maximum if self.max_inclusive else value < self.maximum
        return above and below


class ChoiceKind:
    def __init__(self, choices):
        self.choices = tuple(choices)

    def valid(self):
        return st.sampled_from(self.choices)

    def invalid(self):
        return st.one_of(
            st.text(max_size=12).filter(lambda text: text not in self.choices),
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.just([]),
            st.tuples(st.sampled_from(self.choices)),
        )


class OptionalKind:
    """None or a value of `kind`."""

    def __init__(self, kind):
        self.kind = kind

    def valid(self):
        return st.one_of(st.none(), self.kind.valid())

    def invalid(self):
        return self.kind.invalid().filter(lambda value: value is not None)


class TupleKind:
    """A non-empty tuple of distinct values of `element`."""

    def __init__(self, element, max_size=4):
        self.element = element
        self.max_size = max_size

    def valid(self):
        return st.lists(self.element.valid(), min_size=1, max_size=self.max_size, unique=True).map(tuple)

    def invalid(self):
        with_bad_element = st.tuples(self.element.valid(), self.element.invalid())
        repeated = self.element.valid().map(lambda value: (value, value))
        return st.one_of(st.just(()), st.none(), st.text(max_size=5), st.integers(), with_bad_element, repeated)


class NameKind:
    def valid(self):
        return st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}", fullmatch=True)

    def invalid(self):
        return st.one_of(
            st.sampled_from(["", "-", "_", "two words", "a/b", "a.b", "x!", "tab\t"]),
            st.none(),
            st.integers(),
            st.just(()),
        )


class TextKind:
    def valid(self):
        return st.text(max_size=20)

    def invalid(self):
        return st.one_of(st.none(), st.integers(), st.floats(), st.just(()), st.just(["text"]))


class InstanceKind:
    """An instance of a spec dataclass, built from its valid values; anything else is invalid."""

    def __init__(self, values):
        self.values = values

    def valid(self):
        return self.values

    def invalid(self):
        # Not dicts: from_dict and profile files take a nested spec as a dict of its fields.
        return st.one_of(st.text(max_size=5), st.just(()), st.just([]), st.none(), st.integers(), st.floats())


TIMING_KINDS = {
    "warmup_values": IntKind(0),
    "min_values": IntKind(1),
    "min_duration_s": FloatKind(0.0, 3600.0),
    "max_duration_s": FloatKind(0.0, 36000.0, min_inclusive=False),
    "min_value_s": FloatKind(0.0, 10.0, min_inclusive=False),
    "latency_batch_size": IntKind(1, 65536),
    "throughput_batch_size": IntKind(1, 65536),
    "throughput_min_values": IntKind(1),
    "throughput_min_duration_s": FloatKind(0.0, 3600.0),
}

RECIPE_KINDS = {
    "optimizer": ChoiceKind(["sgd"]),
    "learning_rate": FloatKind(0.0, 10.0, min_inclusive=False),
    "momentum": FloatKind(0.0, 1.0, max_inclusive=False),
    "batch_size": IntKind(1, 65536),
    "epochs": IntKind(1, 10000),
    "seed": IntKind(0, 2**31 - 1),
    "lr_schedule": ChoiceKind(["constant", "cosine"]),
    "loss": ChoiceKind(["cross-entropy"]),
}

ATTACK_KINDS = {
    "method": ChoiceKind(["fgsm", "pgd"]),
    "epsilon": FloatKind(0.0, 1.0),
    "steps": IntKind(1, 1000),
    "step_size": OptionalKind(FloatKind(0.0, 1.0, min_inclusive=False)),
}


@st.composite
def valid_timing_values(draw):
    values = {name: draw(kind.valid()) for name, kind in TIMING_KINDS.items()}
    # max_duration_s must be >= min_duration_s (and > 0).
    minimum = values["min_duration_s"]
    values["max_duration_s"] = draw(st.floats(minimum, 36000.0, exclude_min=minimum == 0.0))
    return values


@st.composite
def valid_attack_values(draw):
    epsilon = draw(ATTACK_KINDS["epsilon"].valid())
    if draw(st.booleans()):
        # FGSM is one step of size epsilon.
        step_size = draw(st.sampled_from([None, epsilon])) if epsilon > 0 else None
        return {"method": "fgsm", "epsilon": epsilon, "steps": 1, "step_size": step_size}
    steps = draw(ATTACK_KINDS["steps"].valid())
    step_size = draw(ATTACK_KINDS["step_size"].valid())
    return {"method": "pgd", "epsilon": epsilon, "steps": steps, "step_size": step_size}


PROFILE_KINDS = {
    "name": NameKind(),
    "description": TextKind(),
    "dataset": ChoiceKind(DATASETS),
    "model": ChoiceKind(MODELS),
    "frameworks": TupleKind(ChoiceKind(FRAMEWORKS)),
    "strategies": TupleKind(ChoiceKind(STRATEGIES)),
    "seeds": TupleKind(IntKind(0, 2**31 - 1)),
    "epochs": IntKind(1, 10000),
    "batch_size": IntKind(1, 65536),
    "learning_rate": FloatKind(0.0, 10.0, min_inclusive=False),
    "lr_schedule": ChoiceKind(["constant", "cosine"]),
    "momentum": FloatKind(0.0, 1.0, max_inclusive=False),
    "train_limit": OptionalKind(IntKind(1)),
    "test_limit": OptionalKind(IntKind(1)),
    "threads": OptionalKind(IntKind(1, 1024)),
    "cell_timeout_s": FloatKind(1.0, 7 * 24 * 3600.0),
    "cell_memory_limit_mb": OptionalKind(IntKind(64, 2**30)),
    "timing": InstanceKind(valid_timing_values().map(lambda values: TimingSpec(**values))),
    "robustness": InstanceKind(valid_attack_values().map(lambda values: AttackParams(**values))),
    "robust_samples": OptionalKind(IntKind(1)),
    "target_accuracy": OptionalKind(FloatKind(0.0, 1.0, min_inclusive=False)),
}

# Values that JSON can carry, for fields whose value is drawn at random.
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)

# Keys that TOML and JSON can both write as quoted strings: no control characters or surrogates.
KEY_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=12)


def field_and_invalid_value(kinds):
    return st.sampled_from(sorted(kinds)).flatmap(lambda name: st.tuples(st.just(name), kinds[name].invalid()))


def assert_names_field(error, name):
    assert name in str(error)


def test_kind_tables_cover_every_field():
    assert set(TIMING_KINDS) == {item.name for item in dataclasses.fields(TimingSpec)}
    assert set(RECIPE_KINDS) == {item.name for item in dataclasses.fields(TrainRecipe)}
    assert set(ATTACK_KINDS) == {item.name for item in dataclasses.fields(AttackParams)}
    assert set(PROFILE_KINDS) == set(PROFILE_FIELDS)


@SETTINGS
@given(values=valid_timing_values())
def test_timing_accepts_valid_values(values):
    assert TimingSpec(**values).min_values == values["min_values"]


@SETTINGS
@given(change=field_and_invalid_value(TIMING_KINDS))
def test_timing_rejects_invalid_values(change):
    name, value = change
    with pytest.raises(ValueError) as caught:
        TimingSpec(**{name: value})
    assert_names_field(caught.value, "TimingSpec.")


@SETTINGS
@given(values=st.fixed_dictionaries({name: kind.valid() for name, kind in RECIPE_KINDS.items()}))
def test_recipe_accepts_valid_values(values):
    recipe = TrainRecipe(**values)
    assert 0.0 <= recipe.learning_rate_at(recipe.epochs - 1) <= recipe.learning_rate


@SETTINGS
@given(change=field_and_invalid_value(RECIPE_KINDS))
def test_recipe_rejects_invalid_values(change):
    name, value = change
    with pytest.raises(ValueError) as caught:
        TrainRecipe(**{name: value})
    assert_names_field(caught.value, f"TrainRecipe.{name}")


@SETTINGS
@given(values=valid_attack_values())
def test_attack_accepts_valid_values(values):
    attack = AttackParams(**values)
    assert 0.0 <= attack.resolved_step_size


@SETTINGS
@given(change=field_and_invalid_value(ATTACK_KINDS))
def test_attack_rejects_invalid_values(change):
    name, value = change
    with pytest.raises(ValueError) as caught:
        AttackParams(**{name: value})
    assert_names_field(caught.value, f"AttackParams.{name}")


@SETTINGS
@given(steps=st.integers(2, 1000), epsilon=ATTACK_KINDS["epsilon"].valid())
def test_fgsm_rejects_several_steps(steps, epsilon):
    with pytest.raises(ValueError, match="FGSM is one step"):
        AttackParams(method="fgsm", epsilon=epsilon, steps=steps)


@SETTINGS
@given(changes=st.fixed_dictionaries({}, optional={name: kind.valid() for name, kind in PROFILE_KINDS.items()}))
def test_profile_accepts_valid_overrides(changes):
    profile = dataclasses.replace(get_profile("smoke"), **changes)

    for name, value in changes.items():
        assert getattr(profile, name) == value
    assert Profile.from_dict(profile.to_dict()) == profile
    assert Profile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


@SETTINGS
@given(change=field_and_invalid_value(PROFILE_KINDS).filter(lambda change: change[1] is not None))
def test_profile_overrides_reject_invalid_values(change):
    name, value = change
    with pytest.raises(ValueError):
        get_profile("smoke").with_overrides(**{name: value})


@SETTINGS
@given(change=field_and_invalid_value(PROFILE_KINDS))
def test_from_dict_rejects_invalid_values(change):
    name, value = change
    data = get_profile("smoke").to_dict()
    data[name] = value
    with pytest.raises(ValueError) as caught:
        Profile.from_dict(data)
    if name != "name":
        assert str(caught.value).startswith("profile 'smoke': ")


@SETTINGS
@given(
    table=st.sampled_from(["timing", "robustness"]),
    change=st.one_of(field_and_invalid_value(TIMING_KINDS), field_and_invalid_value(ATTACK_KINDS)),
)
def test_from_dict_rejects_invalid_nested_values(table, change):
    name, value = change
    data = get_profile("quick").to_dict()
    data[table][name] = value
    with pytest.raises(ValueError):
        Profile.from_dict(data)


@SETTINGS
@given(key=KEY_TEXT.filter(lambda key: key not in PROFILE_FIELDS), value=JSON_VALUES)
def test_from_dict_rejects_unknown_keys(key, value):
    data = get_profile("smoke").to_dict()
    data[key] = value
    with pytest.raises(ValueError) as caught:
        Profile.from_dict(data)
    assert repr(key) in str(caught.value)


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory):
    """Directory for the files that the property tests write.

    Module-scoped, because Hypothesis does not reset a function-scoped fixture between the examples of a test.
    """
    return tmp_path_factory.mktemp("profiles")


def toml_string(text):
    # JSON string escapes (\", \\, \n, \uXXXX) are valid TOML basic-string escapes.
    return json.dumps(text, ensure_ascii=False)


def write_profile(directory, suffix, top_level, tables):
    """Write a profile file with `base = "smoke"`, the top-level keys and the nested tables."""
    path = directory / f"random{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"base": "smoke", **top_level, **tables}), encoding="utf-8")
        return path
    lines = ['base = "smoke"']
    lines += [f"{toml_string(key)} = {json.dumps(value)}" for key, value in top_level.items()]
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{toml_string(key)} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@SETTINGS
@given(
    suffix=st.sampled_from([".toml", ".json"]),
    table=st.sampled_from([None, "timing", "robustness"]),
    key=KEY_TEXT,
    value=st.integers(-5, 5),
)
def test_profile_file_rejects_unknown_keys(profile_dir, suffix, table, key, value):
    valid = {
        None: ("base", *PROFILE_FIELDS),
        "timing": tuple(item.name for item in dataclasses.fields(TimingSpec)),
        "robustness": tuple(item.name for item in dataclasses.fields(AttackParams)),
    }[table]
    if key in valid:
        key += "_x"
    if table is None:
        path = write_profile(profile_dir, suffix, {key: value}, {})
    else:
        path = write_profile(profile_dir, suffix, {}, {table: {key: value}})

    with pytest.raises(ValueError) as caught:
        load_profile_file(path)

    message = str(caught.value)
    assert path.name in message
    assert f"unknown key {key!r}" in message


@SETTINGS
@given(name=st.sampled_from(["base", *PROFILE_FIELDS]), value=JSON_VALUES)
def test_json_profile_file_never_raises_other_errors(profile_dir, name, value):
    path = profile_dir / "random-value.json"
    path.write_text(json.dumps({"base": "smoke", name: value}), encoding="utf-8")
    try:
        profile = load_profile_file(path)
    except ValueError as error:
        assert path.name in str(error)
        return
    assert isinstance(profile, Profile)


@SETTINGS
@given(suffix=st.sampled_from([".toml", ".json"]), content=st.binary(max_size=64))
def test_profile_file_bytes_never_raise_other_errors(profile_dir, suffix, content):
    path = profile_dir / f"random-bytes{suffix}"
    path.write_bytes(content)
    try:
        load_profile_file(path)
    except ValueError as error:
        assert path.name in str(error)


@SETTINGS
@given(changes=st.fixed_dictionaries({}, optional={name: kind.valid() for name, kind in PROFILE_KINDS.items()}))
def test_json_profile_file_matches_replace(profile_dir, changes):
    data = {"base": "smoke", "name": "random"}
    for name, value in changes.items():
        data[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    path = profile_dir / "valid.json"
    path.write_text(json.dumps(data), encoding="utf-8")

    profile = load_profile_file(path)

    expected = dataclasses.replace(
        get_profile("smoke"), **{"name": "random", "description": "from valid.json", **changes}
    )
    assert profile == expected
