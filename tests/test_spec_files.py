"""Profile files (TOML and JSON) given to --profile, and Profile.from_dict on run.json data."""

import json
import re

import pytest

from bench.cli import main
from bench.spec import (
    PROFILES,
    Profile,
    TimingSpec,
    get_profile,
    load_profile_file,
    name_fields_as_keys,
    resolve_profile,
)
from bench.spec.strategy import AttackParams

FAST_TOML = """\
base = "quick"
epochs = 3
seeds = [0, 1]
strategies = ["baseline", "quantize"]

[timing]
min_values = 200

[robustness]
epsilon = 0.05
"""


def write(directory, name, text):
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_with_base_overrides_base(tmp_path):
    path = write(tmp_path, "fast.toml", FAST_TOML)

    profile = load_profile_file(path)

    quick = get_profile("quick")
    assert profile.name == "fast"
    assert profile.description == "from fast.toml"
    assert profile.epochs == 3
    assert profile.seeds == (0, 1)
    assert profile.strategies == ("baseline", "quantize")
    assert profile.dataset == quick.dataset
    assert profile.learning_rate == quick.learning_rate
    assert profile.timing == TimingSpec(min_values=200)
    assert profile.robustness == AttackParams(method="pgd", epsilon=0.05, steps=10)


def test_base_nested_table_keeps_base_values(tmp_path):
    path = write(tmp_path, "tiny.toml", 'base = "smoke"\n[timing]\nmin_values = 30\n')

    profile = load_profile_file(path)

    smoke_timing = get_profile("smoke").timing
    assert profile.timing.min_values == 30
    assert profile.timing.warmup_values == smoke_timing.warmup_values
    assert profile.timing.max_duration_s == smoke_timing.max_duration_s


def test_toml_without_base_uses_defaults(tmp_path):
    text = 'name = "mine"\ndescription = "digits, two epochs"\ndataset = "digits"\nepochs = 2\n'
    path = write(tmp_path, "mine.toml", text)

    profile = load_profile_file(path)

    expected = Profile(name="mine", description="digits, two epochs", dataset="digits", epochs=2)
    assert profile == expected


def test_file_name_and_description_can_be_set(tmp_path):
    text = 'base = "smoke"\nname = "other"\ndescription = "a test run"\n'
    profile = load_profile_file(write(tmp_path, "file.toml", text))
    assert profile.name == "other"
    assert profile.description == "a test run"


def test_json_file_with_null(tmp_path):
    data = {
        "name": "json-profile",
        "dataset": "digits",
        "seeds": [3, 4],
        "target_accuracy": None,
        "robustness": {"method": "fgsm", "epsilon": 0.1, "steps": 1, "step_size": None},
    }
    path = write(tmp_path, "profile.json", json.dumps(data))

    profile = load_profile_file(path)

    assert profile.name == "json-profile"
    assert profile.description == "from profile.json"
    assert profile.seeds == (3, 4)
    assert profile.target_accuracy is None
    assert profile.robustness == AttackParams(method="fgsm", epsilon=0.1, steps=1)


def test_json_null_resets_base_value(tmp_path):
    path = write(tmp_path, "open.json", json.dumps({"base": "smoke", "target_accuracy": None}))
    assert load_profile_file(path).target_accuracy is None


def test_byte_order_mark_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'base = "smoke"\n')
    assert load_profile_file(path).name == "bom"


def test_resolve_profile_names_and_files(tmp_path):
    path = write(tmp_path, "fast.toml", FAST_TOML)
    assert resolve_profile("smoke") is PROFILES["smoke"]
    assert resolve_profile(str(path)).name == "fast"
    assert resolve_profile(path).name == "fast"


def test_resolve_profile_unknown_name():
    with pytest.raises(ValueError, match="valid profiles: smoke, quick, full, claim, or the path of a .toml or .json"):
        resolve_profile("huge")


def test_resolve_profile_rejects_other_suffix(tmp_path):
    path = write(tmp_path, "profile.yaml", "base: smoke\n")
    with pytest.raises(ValueError, match=r"must be named \*\.toml or \*\.json"):
        resolve_profile(str(path))


def test_file_profile_round_trips(tmp_path):
    profile = load_profile_file(write(tmp_path, "fast.toml", FAST_TOML))

    assert Profile.from_dict(profile.to_dict()) == profile
    assert Profile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


def expect_error(path, *parts):
    """Load `path`, expecting a ValueError whose message names the file and contains every part."""
    with pytest.raises(ValueError) as caught:
        load_profile_file(path)
    message = str(caught.value)
    assert path.name in message
    for part in parts:
        assert part in message
    return message


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "typo.toml", 'base = "quick"\nepoch = 3\n')
    message = expect_error(path, "'epoch'", "did you mean 'epochs'?", "valid keys: base, name")
    assert "at the top level" in message


def test_unknown_nested_key(tmp_path):
    path = write(tmp_path, "typo.toml", 'base = "quick"\n[timing]\nmin_valuez = 3\n')
    message = expect_error(path, "'min_valuez'", "did you mean 'min_values'?", "valid keys: warmup_values")
    assert "in table 'timing'" in message


def test_unknown_robustness_key_in_json(tmp_path):
    path = write(tmp_path, "typo.json", json.dumps({"base": "quick", "robustness": {"epsilonn": 0.1}}))
    expect_error(path, "'epsilonn'", "did you mean 'epsilon'?", "in table 'robustness'")


def test_several_unknown_keys_listed(tmp_path):
    path = write(tmp_path, "typos.toml", 'base = "quick"\nepoch = 3\nzzz = 1\n')
    message = expect_error(path, "unknown keys 'epoch', 'zzz'", "'epochs' for 'epoch'")
    assert "for 'zzz'" not in message


def test_unknown_key_without_close_match(tmp_path):
    path = write(tmp_path, "odd.toml", 'base = "quick"\nqqqqqqqq = 1\n')
    message = expect_error(path, "unknown key 'qqqqqqqq'", "valid keys:")
    assert "did you mean" not in message


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ('base = "quick"\nepochs = "3"\n', ("'epochs'", "'3'")),
        ('base = "quick"\nepochs = 2.5\n', ("'epochs'", "2.5")),
        ('base = "quick"\nthreads = true\n', ("'threads'", "True")),
        ('base = "quick"\nstrategies = "baseline"\n', ("'strategies' must be a list", "'baseline'")),
        ('base = "quick"\n[frameworks]\ntorch = 1\n', ("'frameworks' must be a list",)),
        ('base = "quick"\ntiming = [1, 2]\n', ("'timing' must be a table of TimingSpec fields",)),
        ('base = "quick"\nseeds = ["0"]\n', ("'seeds'", "'0'")),
        ('base = "quick"\ndescription = 5\n', ("'description' must be a string",)),
        ("base = 3\n", ("unknown base profile 3",)),
    ],
)
def test_wrong_type_named(tmp_path, text, parts):
    expect_error(write(tmp_path, "types.toml", text), *parts)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ('base = "quick"\nepochs = 0\n', ("'epochs' must be an integer in [1, 10000], got 0",)),
        ('base = "quick"\nseeds = []\n', ("'seeds' must be a non-empty tuple",)),
        ('base = "quick"\nseeds = [1, 1]\n', ("'seeds' must not repeat an entry",)),
        ('base = "quick"\nlearning_rate = nan\n', ("'learning_rate'", "nan")),
        ('base = "quick"\ncell_timeout_s = inf\n', ("'cell_timeout_s'", "inf")),
        ('base = "quick"\n[timing]\nmin_duration_s = 50.0\n', ("'timing.max_duration_s'",)),
        ('base = "quick"\n[robustness]\nepsilon = 2.0\n', ("'robustness.epsilon'",)),
        ('base = "quick"\nlr_schedule = "step"\n', ("'lr_schedule' must be one of constant, cosine",)),
    ],
)
def test_out_of_range_named(tmp_path, text, parts):
    expect_error(write(tmp_path, "range.toml", text), *parts)


def test_toml_syntax_error_gives_position(tmp_path):
    path = write(tmp_path, "broken.toml", 'base = "quick"\nepochs = \n')
    expect_error(path, "invalid TOML", "line 2, column")


def test_json_syntax_error_gives_position(tmp_path):
    path = write(tmp_path, "broken.json", '{"base": "quick",\n "epochs": }')
    expect_error(path, "invalid JSON", "line 2 column")


def test_json_top_level_must_be_object(tmp_path):
    expect_error(write(tmp_path, "list.json", "[1, 2]"), "expected an object of profile fields")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('base = "quick"\nname = "café"\n'.encode("latin-1"))
    expect_error(path, "not UTF-8", "0xe9")


def test_missing_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(FileNotFoundError, match="absent.toml"):
        load_profile_file(path)


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(ValueError, match="folder.toml could not be read"):
        load_profile_file(tmp_path / "folder.toml")


def test_unknown_base(tmp_path):
    expect_error(write(tmp_path, "b.toml", 'base = "huge"\n'), "unknown base profile 'huge'", "smoke, quick, full, claim")


def test_required_keys_without_base(tmp_path):
    path = write(tmp_path, "bare.toml", "epochs = 3\n")
    expect_error(path, "missing required keys 'name', 'dataset'")


def test_unknown_dataset_lists_valid_ones(tmp_path):
    path = write(tmp_path, "d.toml", 'name = "d"\ndataset = "cifar"\n')
    expect_error(path, "'dataset'", "'cifar'", "fashion-mnist", "digits")


def test_unknown_model_lists_valid_ones(tmp_path):
    path = write(tmp_path, "m.toml", 'base = "smoke"\nmodel = "vgg"\n')
    expect_error(path, "'model'", "'vgg'", "lenet5, lenet5-wide")


def test_name_from_stem_must_be_valid(tmp_path):
    path = write(tmp_path, "my profile.toml", 'base = "smoke"\n')
    expect_error(path, "'name'", "'my profile'")


def test_from_dict_rejects_unknown_key():
    data = get_profile("smoke").to_dict()
    data["epoch"] = 3
    expected = "profile 'smoke': unknown key 'epoch' at the top level (did you mean 'epochs'?)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        Profile.from_dict(data)


def test_from_dict_rejects_unknown_timing_key():
    data = get_profile("smoke").to_dict()
    data["timing"]["warmup"] = 3
    expected = "unknown key 'warmup' in table 'timing' (did you mean 'warmup_values'?)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        Profile.from_dict(data)


def test_from_dict_names_source():
    data = get_profile("smoke").to_dict()
    data["seeds"] = "0"
    with pytest.raises(ValueError, match=re.escape("run.json: 'seeds' must be a list")):
        Profile.from_dict(data, source="run.json")


def test_from_dict_missing_required_key():
    data = get_profile("smoke").to_dict()
    del data["dataset"]
    with pytest.raises(ValueError, match="missing required key 'dataset'"):
        Profile.from_dict(data)


def test_from_dict_rejects_non_mapping():
    with pytest.raises(ValueError, match="expected a mapping of profile fields"):
        Profile.from_dict(["smoke"])


def test_with_overrides_rejects_unknown_field():
    with pytest.raises(ValueError, match="unknown key 'epoch' in the profile overrides"):
        get_profile("smoke").with_overrides(epoch=3)


def test_cli_env_rejects_bad_file(tmp_path, caplog):
    path = write(tmp_path, "typo.toml", 'base = "smoke"\nepoch = 3\n')

    assert main(["env", "--no-frameworks", "--profile", str(path)]) == 2

    assert "typo.toml: unknown key 'epoch' at the top level (did you mean 'epochs'?)" in caplog.text
    assert "Traceback" not in caplog.text


def test_cli_all_rejects_missing_file(tmp_path, caplog):
    assert main(["all", "--profile", str(tmp_path / "absent.toml"), "--results-dir", str(tmp_path)]) == 2
    assert "profile file" in caplog.text
    assert "absent.toml not found" in caplog.text
    assert not (tmp_path / "runs").exists()


def test_cli_env_shows_file_profile(tmp_path, capsys):
    path = write(tmp_path, "tiny.toml", 'base = "smoke"\n[timing]\nmin_values = 30\n')

    assert main(["env", "--no-frameworks", "--profile", str(path)]) == 0

    manifest = json.loads(capsys.readouterr().out)
    assert manifest["profile"] == "tiny"
    assert '"min_values": 30' in json.dumps(manifest)


def test_field_names_rewritten_as_keys_or_options():
    message = "TrainRecipe.epochs must be >= 1; TimingSpec.min_values and AttackParams.steps too; Profile.seeds"
    assert name_fields_as_keys(message) == (
        "'epochs' must be >= 1; 'timing.min_values' and 'robustness.steps' too; 'seeds'"
    )
    assert name_fields_as_keys(message, {"epochs": "--epochs", "seeds": "--seeds"}) == (
        "--epochs must be >= 1; 'timing.min_values' and 'robustness.steps' too; --seeds"
    )
    # Words that merely contain a class name are left alone.
    assert name_fields_as_keys("MyProfile.x stays") == "MyProfile.x stays"
