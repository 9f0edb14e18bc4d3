"""Recipe schema: every shipped recipe resolves, overrides (plain and dotted), and unknown-key errors."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from timm_selfcon.config import (
    FIELD_NAMES,
    LEGACY_METHOD_KEYS,
    TrainConfig,
    parse_override,
    read_recipe,
    resolve_config,
)
from timm_selfcon.engine.schedule import SCHEDULES
from timm_selfcon.methods import METHODS

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
ALL_RECIPES = sorted(RECIPES.rglob("*.yaml"))


def test_the_recipe_folder_is_found() -> None:
    assert (RECIPES / "quickstart.yaml").is_file()
    assert len(ALL_RECIPES) > 50  # selfcon/ and mixco/ recipes and their bases


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_recipe_resolves_to_a_valid_config(recipe: Path) -> None:
    config = resolve_config(recipe)
    assert isinstance(config, TrainConfig)
    assert config.method in METHODS and config.schedule in SCHEDULES
    assert config.provenance, f"{recipe} has no provenance"
    # the batch layout must be accepted on one process (the engine's check before training)
    from timm_selfcon.engine.train import check_batch_layout

    assert check_batch_layout(config, 1) == config.batch_size


def test_recipes_document_every_key_in_the_readme() -> None:
    readme = (RECIPES / "README.md").read_text()
    missing = [key for key in FIELD_NAMES if f"`{key}`" not in readme]
    assert not missing, f"recipes/README.md does not document {missing}"


def test_recipes_readme_lists_every_methods_options_with_its_default() -> None:
    readme = (RECIPES / "README.md").read_text()
    for name, cls in METHODS.items():
        row = next((line for line in readme.splitlines() if line.startswith("| ") and f"`{name}`" in line.split("|")[1]),
                   "")
        assert f"`{cls.Options.__name__}`" in row, name
        for option, field in cls.Options.model_fields.items():
            default = str(field.default).lower() if isinstance(field.default, bool) else str(field.default)
            assert f"`{option}` ({default})" in row, (name, option)


def test_base_chain_is_merged_and_the_child_wins() -> None:
    merged = read_recipe(RECIPES / "selfcon" / "cifar10_resnet18_ce.yaml")
    base = read_recipe(RECIPES / "selfcon" / "base_cifar.yaml")
    assert merged["lr"] == 0.8 != base["lr"]  # overridden by the child
    assert merged["weight_decay"] == base["weight_decay"]  # inherited from the base
    assert "base" not in merged


def test_overrides_are_yaml_values_and_win_over_the_recipe() -> None:
    recipe = RECIPES / "selfcon" / "cifar10_resnet18_selfcon.yaml"
    config = resolve_config(recipe, ["epochs=3", "lr=0.05", "method_kwargs.gather=false", "max_steps=null",
                                     "class_list=[a, b]", "output_dir=/tmp/x"])
    assert (config.epochs, config.lr, config.method_kwargs["gather"], config.max_steps) == (3, 0.05, False, None)
    assert config.class_list == ["a", "b"] and config.output_dir == "/tmp/x"
    assert resolve_config(recipe).epochs == 1000  # the file itself is unchanged
    assert resolve_config(None, {"batch_size": 16}).batch_size == 16  # a mapping works too (Python API)


def test_dotted_override_updates_one_entry_of_a_mapping() -> None:
    recipe = RECIPES / "quickstart.yaml"
    assert resolve_config(recipe).model_kwargs == {"exit_stages": [2], "sub_network": "fc"}
    config = resolve_config(recipe, ["model_kwargs.sub_network=same", "probe.epochs=2"])
    assert config.model_kwargs == {"exit_stages": [2], "sub_network": "same"}
    assert config.probe.to_dict() == {"enabled": True, "epochs": 2}
    assert resolve_config(None, ["method_kwargs.alpha=0.5"]).method_kwargs["alpha"] == 0.5


def test_parse_override_values() -> None:
    assert parse_override("lr=1e-3") == ("lr", 1e-3)  # YAML 1.1 alone would give the string "1e-3"
    assert parse_override("lr=2E+1") == ("lr", 20.0)
    assert parse_override("model_kwargs.exit_stages=(1,2)") == ("model_kwargs.exit_stages", [1, 2])
    assert parse_override("data=builtin:cifar10_subset") == ("data", "builtin:cifar10_subset")
    with pytest.raises(ValueError, match="expected key=value, got 'epochs'"):
        parse_override("epochs")


@pytest.mark.parametrize(("key", "nearest"), [("learning_rte", "lr"), ("learning_rate", "lr"), ("epoch", "epochs"),
                                              ("batchsize", "batch_size"), ("save_every_step", "save_every_steps")])
def test_unknown_override_key_names_the_nearest_valid_one(key: str, nearest: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown recipe key '{key}' in the overrides; did you mean '{nearest}'\?"):
        resolve_config(None, [f"{key}=1"])


def test_unknown_dotted_key_names_the_mapping_it_resembles() -> None:
    with pytest.raises(ValueError, match=r"unknown recipe key .model_kwarg. .*did you mean 'model_kwargs'"):
        resolve_config(None, ["model_kwarg.sub_network=same"])


def test_unknown_key_in_a_recipe_file_names_the_file_and_nearest(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("lr: 0.1\nwarmup_epoch: 3\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\nepochs: 2\n")
    with pytest.raises(ValueError, match=r"unknown recipe key 'warmup_epoch' in .*base\.yaml; did you mean 'warmup_epochs'"):
        resolve_config(child)


def test_a_key_far_from_every_valid_one_lists_the_valid_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown recipe key .zzzzqqq..*valid keys: provenance, model"):
        resolve_config(None, ["zzzzqqq=1"])


@pytest.mark.parametrize(("override", "message"), [
    ("method=not_a_method", "unknown method 'not_a_method'"),
    ("precision=fp8", r"precision: Input should be 'fp32', 'bf16', 'fp16' or 'auto' \(got 'fp8'\)"),
    ("schedule=step", r"schedule: Input should be 'cosine', .* \(got 'step'\)"),
    ("batch_size=0", r"batch_size: Input should be greater than 0 \(got 0\)"),
    ("max_steps=-1", r"max_steps: Input should be greater than 0 \(got -1\)"),
    ("lr=0", r"lr: Input should be greater than 0 \(got 0\)"),
])
def test_invalid_values_are_rejected_naming_the_value(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_config(None, [override])


def test_exponent_notation_in_a_recipe_file_is_a_number(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("weight_decay: 1e-4\nlr: 5e-2\n")
    config = resolve_config(recipe)
    assert (config.weight_decay, config.lr) == (1e-4, 5e-2)
    assert isinstance(config.weight_decay, float)


@pytest.mark.parametrize(("override", "message"), [  # the list: each refused at resolve time
    ("image_size=abc", r"image_size: Input should be a valid integer.*\(got 'abc'\)"),
    ("num_workers=-3", "num_workers: expected an int >= 0 or auto, got -3"),
    ("projection_dim=0", r"method_kwargs.out_dim: Input should be greater than 0 \(got 0\)"),
    ("temperature=0", r"method_kwargs.temperature: Input should be greater than 0 \(got 0\)"),
    ("method_kwargs.temperature=0", r"method_kwargs.temperature: Input should be greater than 0 \(got 0\)"),
    ("warmup_epochs=ten", r"warmup_epochs: Input should be a valid integer.*\(got 'ten'\)"),
    ("probe.enabeld=true", r"unknown key 'probe.enabeld' in the overrides; did you mean 'probe.enabled'\?"),
    ("model_kwargs.exit_stage=[1]", r"model_kwargs: model 'selfcon_resnet18_cifar' takes no kwarg 'exit_stage'; "
                                    r"did you mean 'exit_stages'\?"),
    ("model_kwargs.exit_stages=[9]", "model_kwargs: exit stage 9 is out of range"),
    ("method_kwargs.head_bn=true", r"method_kwargs.head_bn: method 'selfcon' has no option 'head_bn'; "
                                   r"did you mean 'head_batchnorm'\?"),
    ("method_kwargs.alpha=abc", r"method_kwargs.alpha: Input should be a valid number.*\(got 'abc'\)"),
    ("method_kwargs.gather=maybe", r"method_kwargs.gather: Input should be a valid boolean \(got 'maybe'\)"),
    ("augmentation=supcn", r"augmentation: unknown pipeline 'supcn'"),
    ("resume=ture", "resume: expected true, false or auto, got 'ture'"),
    ("streaming=true", "streaming was removed"),
    ("temperature=abc", r"method_kwargs.temperature: Input should be a valid number.* \(got 'abc'\)"),
    ("lr=true", "lr: expected a number, got true/false"),
    ("momentum=.nan", "momentum: expected a finite number"),
])
def test_bad_overrides_are_refused_at_resolve_time_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_config(None, [override])


def test_resolving_checks_the_model_but_reads_no_data() -> None:
    # the model is built (on the meta device) to check its kwargs; the dataset is only read when training starts
    config = resolve_config(RECIPES / "selfcon" / "cifar100_resnet50_selfcon.yaml", ["data=/nonexistent"])
    assert config.data == "/nonexistent"


def test_augmentation_auto_is_the_methods_own_pipeline() -> None:
    from timm_selfcon.methods import METHODS

    for name, cls in METHODS.items():
        assert resolve_config(None, [f"method={name}"]).augmentation == cls.augmentation
    assert resolve_config(None, ["method=ce", "augmentation=supcon"]).augmentation == "supcon"


def test_a_saved_config_with_a_removed_key_still_loads() -> None:
    from timm_selfcon.config import load_saved_config

    saved = {**TrainConfig().to_dict(), "streaming": False}
    assert load_saved_config(saved) == TrainConfig()
    with pytest.raises(ValueError, match="streaming was removed"):
        load_saved_config({**saved, "streaming": True})


def test_missing_recipe_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        resolve_config(tmp_path / "nope.yaml")


def test_cli_reports_an_unknown_key_naming_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    from timm_selfcon.cli import main

    assert main(["train", str(RECIPES / "quickstart.yaml"), "epochs=1", "num_worker=0"]) == 2
    error = capsys.readouterr().err
    expected = "unknown recipe key 'num_worker' in the overrides; did you mean 'num_workers'?"
    assert f"timm-selfcon train: error: {expected}" in error


@pytest.mark.parametrize("recipe", sorted(RECIPES.rglob("*.yaml")), ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipes_pick_precision_and_workers_for_the_machine(recipe: Path) -> None:
    config = resolve_config(recipe)
    assert (config.precision, config.num_workers) == ("auto", "auto")


def test_num_workers_auto_is_the_cores_available_less_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from timm_selfcon.data import resolve_num_workers

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_num_workers("auto") == max(cores - 1, 0)
    assert resolve_num_workers("auto", processes_per_machine=cores) == 0  # one core each: no spare for a worker
    assert resolve_num_workers(3) == 3
    with pytest.raises(ValueError, match="num_workers: expected an int >= 0 or auto, got 'many'"):
        resolve_config(None, ["num_workers=many"])


def test_overridden_keys_are_named_in_the_provenance() -> None:
    recipe = RECIPES / "selfcon" / "cifar100_resnet18_selfcon.yaml"
    official = resolve_config(recipe).provenance
    config = resolve_config(recipe, ["epochs=10", "model_kwargs.sub_network=same", "num_workers=0", "output_dir=x"])
    assert config.provenance == f"{official}; overridden: epochs=10, model_kwargs.sub_network=same"
    assert resolve_config(recipe, ["output_dir=x", "epochs=1000"]).provenance == official  # same value, or no effect
    assert resolve_config(recipe, ["epochs=10", "provenance=mine"]).provenance == "mine"


# ---- a method's own defaults (issue 24, item 9); its options in its own Options model (issue 25, item 1) -------------
def test_train_config_holds_no_method_option() -> None:
    assert not set(LEGACY_METHOD_KEYS) & set(TrainConfig.model_fields)
    for cls in METHODS.values():  # every old top-level key names an option of some method, under its new name
        assert set(cls.Options.model_fields) >= {o for o in LEGACY_METHOD_KEYS.values() if o in cls.Options.model_fields}
    assert set(LEGACY_METHOD_KEYS.values()) <= {o for cls in METHODS.values() for o in cls.Options.model_fields}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_method_option_left_unset_gets_the_methods_own_default(method: str) -> None:
    from timm_selfcon.engine.train import method_kwargs
    from timm_selfcon.methods import method_defaults

    config = resolve_config(None, [f"method={method}"])
    defaults = method_defaults(method)
    assert defaults == {name: field.default for name, field in METHODS[method].Options.model_fields.items()}
    assert config.method_kwargs == defaults  # the config (and so the saved config.yaml) records the value used
    assert method_kwargs(config) == defaults


def test_simclr_mixco_and_moco_train_at_their_papers_temperatures(tmp_path: Path) -> None:
    import yaml

    def options(*overrides: str) -> dict:
        return resolve_config(None, list(overrides)).method_kwargs

    assert (options("method=simclr_mixco")["temperature"], options("method=simclr_mixco")["mix_temperature"]) == (0.5, 0.5)
    assert options("method=moco")["temperature"] == 0.2
    assert options("method=moco_mixco")["mix_temperature"] == 0.05
    assert options("method=selfcon")["temperature"] == 0.1
    # a value given (method_kwargs, or an earlier version's top-level key) wins and is what the config records
    assert options("method=moco", "method_kwargs.temperature=0.4")["temperature"] == 0.4
    assert options("method=moco", "temperature=0.3")["temperature"] == 0.3
    assert options("method=moco", "temperature=null")["temperature"] == 0.2  # null: unset
    # the saved config.yaml records it: read back, it is the same config
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method: simclr_mixco\n")
    saved = yaml.safe_load(yaml.safe_dump(resolve_config(recipe).to_dict()))
    assert saved["method_kwargs"] == {"out_dim": 128, "temperature": 0.5, "gather": True, "mix_temperature": 0.5,
                                      "mix_weight": 1.0}
    from timm_selfcon.config import load_saved_config

    assert load_saved_config(saved) == resolve_config(recipe)


def test_a_bad_method_option_is_refused_before_any_data_loads() -> None:
    with pytest.raises(ValueError, match=r"method_kwargs.queue_size: method 'simclr' has no option 'queue_size'; "
                                         r"its options: out_dim, temperature, gather"):
        resolve_config(None, ["method=simclr", "method_kwargs.queue_size=16"])
    with pytest.raises(ValueError, match=r"method_kwargs.momentum: Input should be less than or equal to 1 \(got 1.5\)"):
        resolve_config(None, ["method=moco", "method_kwargs.momentum=1.5"])
    with pytest.raises(ValueError, match=r"method_kwargs.key_bn: Input should be 'auto', 'shuffle', 'split' or 'none'"):
        resolve_config(None, ["method=moco", "method_kwargs.key_bn=sync"])
    with pytest.raises(ValueError, match=r"method_kwargs.temperature: method 'ce' has no option 'temperature'; its options: "
                                         r"none"):
        resolve_config(None, ["method=ce", "method_kwargs.temperature=0.1"])


def test_an_old_top_level_key_gets_a_note_naming_its_new_place_and_still_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "old.yaml"
    recipe.write_text("method: moco\ntemperature: 0.3\nmoco_momentum: 0.99\nbase_temperature: 0.07\n")
    config = resolve_config(recipe, ["projection_dim=64"])
    notes = capsys.readouterr().err.splitlines()
    assert notes == [f"note: temperature is a method option now: method_kwargs.temperature (in {recipe})",
                     f"note: moco_momentum is a method option now: method_kwargs.momentum (in {recipe})",
                     f"note: base_temperature is a method option now: method_kwargs.base_temperature (in {recipe})",
                     "note: projection_dim is a method option now: method_kwargs.out_dim (in the overrides)"]
    # each becomes the option it names; one the method does not take (moco has no base_temperature) is dropped
    assert config == resolve_config(None, ["method=moco", "method_kwargs={temperature: 0.3, momentum: 0.99, out_dim: 64}"])
    # the top-level form and the method_kwargs form replace each other, the later (an override, a child recipe) winning
    assert resolve_config(recipe, ["method_kwargs.temperature=0.5"]).method_kwargs["temperature"] == 0.5
    new = tmp_path / "new.yaml"
    new.write_text("method: moco\nmethod_kwargs: {temperature: 0.4, queue_size: 32}\n")
    assert resolve_config(new, ["temperature=0.25"]).method_kwargs["temperature"] == 0.25
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {new.name}\ntemperature: 0.15\n")
    assert (resolve_config(child).method_kwargs["temperature"], resolve_config(child).method_kwargs["queue_size"]) == (
        0.15, 32)
    # set both ways at once, method_kwargs (what the method receives) wins
    assert resolve_config(None, ["method=moco", "temperature=0.3", "method_kwargs.temperature=0.6"]
                          ).method_kwargs["temperature"] == 0.6


def test_benchmark_scripts_recipes_with_top_level_keys_resolve_to_the_same_values() -> None:
    # benchmarks/experiments/experiments_queue.py and rank_methods.py build recipes with the top-level keys
    old = resolve_config(None, dict(method="moco", temperature=0.2, base_temperature=0.07, queue_size=4096,
                                    moco_momentum=0.99, mix_temperature=0.05, mix_weight=1.0, lr=0.06))
    new = resolve_config(None, dict(method="moco", method_kwargs=dict(temperature=0.2, queue_size=4096, momentum=0.99),
                                    lr=0.06))
    assert old == new and old.method_kwargs["queue_size"] == 4096


def test_a_child_recipe_of_another_method_keeps_only_the_options_it_takes(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("method: moco\nmethod_kwargs: {temperature: 0.3, queue_size: 32}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nmethod: simclr\n")
    assert resolve_config(tmp_path / "child.yaml").method_kwargs == {"out_dim": 128, "temperature": 0.3, "gather": True}


def test_a_saved_config_of_an_older_run_still_loads_with_its_recorded_values() -> None:
    from timm_selfcon.config import load_saved_config

    # 0.3.0 recorded the config-wide defaults for every method option at the top level, used or not
    legacy = {"temperature": 0.1, "base_temperature": 0.07, "projection_dim": 128, "queue_size": 65536,
              "moco_momentum": 0.999, "mix_temperature": 0.05, "mix_weight": 1.0, "gather": True}
    old = {**TrainConfig().to_dict(), **legacy, "method": "simclr_mixco", "method_kwargs": {}, "augmentation": "simclr"}
    config = load_saved_config(old)
    assert config.method_kwargs == {"out_dim": 128, "temperature": 0.1, "gather": True, "mix_temperature": 0.05,
                                    "mix_weight": 1.0}  # what it trained at; queue_size is not simclr_mixco's
    # a method_kwargs entry that shadowed the top-level key is what the run trained with
    shadowed = {**old, "method_kwargs": {"temperature": 0.3}}
    assert load_saved_config(shadowed).method_kwargs["temperature"] == 0.3


def _embedded_recipes(value: object):
    if isinstance(value, dict):
        if isinstance(value.get("recipe"), dict):
            yield value["recipe"]
        for item in value.values():
            yield from _embedded_recipes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _embedded_recipes(item)


def test_committed_results_and_exports_load_with_the_options_they_recorded() -> None:
    import json

    from timm_selfcon.config import load_saved_config

    root = RECIPES.parent
    paths = sorted((root / "benchmarks" / "results").rglob("*.json")) + sorted(
        (root / "tests" / "hub" / "fixtures").rglob("export_info.json"))
    recipes = [r for path in paths for r in _embedded_recipes(json.loads(path.read_text())) if r.get("method") in METHODS]
    assert len(recipes) > 20
    for recipe in recipes:
        config = load_saved_config(recipe)
        for key, option in LEGACY_METHOD_KEYS.items():
            if recipe.get(key) is not None and option in config.method_kwargs:
                assert config.method_kwargs[option] == (recipe.get("method_kwargs") or {}).get(option, recipe[key])


def test_resuming_compares_converted_configs_option_by_option(tmp_path: Path) -> None:
    from timm_selfcon.engine.run_dir import config_differences

    config = resolve_config(None, ["method=selfcon"])
    old = {**config.to_dict(), "method_kwargs": {}, "temperature": 0.1, "base_temperature": 0.07, "projection_dim": 128,
           "queue_size": 65536, "moco_momentum": 0.999, "mix_temperature": 0.05, "mix_weight": 1.0, "gather": True}
    assert config_differences(old, config) == {}  # an older run's config.yaml: unused options recorded at defaults
    old_mixco = {**resolve_config(None, ["method=simclr_mixco"]).to_dict(), "method_kwargs": {}, "temperature": 0.1}
    assert config_differences(old_mixco, resolve_config(None, ["method=simclr_mixco"])) == {
        "method_kwargs.temperature": {"from": 0.1, "to": 0.5}}  # the recipe now means another temperature: said
    saved_new = resolve_config(None, ["method=simclr_mixco"]).to_dict()
    assert config_differences(saved_new, resolve_config(None, ["method=simclr_mixco", "method_kwargs.mix_weight=2"])) == {
        "method_kwargs.mix_weight": {"from": 1.0, "to": 2.0}}


#: the option values every method trained at before the options moved into the methods (0.3.0's config-wide defaults;
#: the shipped recipes set the others)
BEFORE = {"temperature": 0.1, "base_temperature": 0.07, "out_dim": 128, "queue_size": 65536, "momentum": 0.999,
          "mix_temperature": 0.05, "mix_weight": 1.0, "gather": True}


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=lambda p: str(p.relative_to(RECIPES)))
def test_shipped_recipes_train_the_method_at_the_values_they_trained_at_before(recipe: Path) -> None:
    # every shipped recipe names the option values it wants, or wants the 0.3.0 value: unchanged by items 9 and 1
    from timm_selfcon.engine.train import method_kwargs

    config = resolve_config(recipe)
    assert not set(read_recipe(recipe)) & set(LEGACY_METHOD_KEYS), "a shipped recipe uses the method_kwargs form"
    given = read_recipe(recipe).get("method_kwargs") or {}
    options = method_kwargs(config)
    for option, value in BEFORE.items():
        if option in options:
            assert options[option] == given.get(option, value), (option, options[option])


# ---- SelfCon needs an exit (issue 24, item 8) -------------------------------------------------------------------------
@pytest.mark.parametrize("method, instead", [("selfcon", "supcon_s"), ("selfcon_m", "supcon")])
def test_selfcon_without_an_exit_is_refused_naming_the_method_it_would_be(method: str, instead: str) -> None:
    with pytest.raises(ValueError, match=rf"method {method!r} needs a model with at least one exit.*"
                                         rf"exit_stages=\[\].*method={instead}"):
        resolve_config(None, [f"method={method}", "model_kwargs.exit_stages=[]"])
    assert resolve_config(None, [f"method={method}", "model_kwargs.exit_stages=[2]"]).method == method


def test_the_cli_refuses_selfcon_without_an_exit_before_writing(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from timm_selfcon.cli import main

    # (one small step, should it train: the test stays cheap when it fails)
    assert main(["train", str(RECIPES / "quickstart.yaml"), "model_kwargs.exit_stages=[]", "max_steps=1",
                 "batch_size=8", "num_workers=0", "probe.enabled=false", f"output_dir={tmp_path / 'run'}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "use method=supcon_s" in error[0], error
    assert not (tmp_path / "run").exists()
