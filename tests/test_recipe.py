"""The typed recipe (vrfer.training.recipe): every shipped recipe loads to what its file says and round-trips
through what a run records; and class sets (vrfer.classes): registered by name, named by a recipe, carried by
the model a run trains."""

import json
import tomllib
from importlib import resources

import numpy as np
import pytest
from fakedata import make_rows, write_folders

from vrfer.classes import CLASS_SETS, CLASSES, class_set, register_class_set
from vrfer.cli import main
from vrfer.errors import VrferError
from vrfer.training.recipe import (Recipe, flatten, from_dict, from_record, load_recipe, load_recorded,
                                   recipe_names)


@pytest.fixture
def fresh_class_sets(monkeypatch):
    """Class sets a test registers are gone after it."""
    import vrfer.classes
    monkeypatch.setattr(vrfer.classes, "CLASS_SETS", dict(CLASS_SETS))


@pytest.fixture
def data(tmp_path_factory, private_cache):
    root = tmp_path_factory.mktemp("ferplus")
    return {"ferplus": str(write_folders(root, make_rows(n_per_split=48)))}


@pytest.mark.parametrize("name", recipe_names())
def test_each_shipped_recipe_loads_to_its_file_and_round_trips(name, tmp_path):
    recipe = load_recipe(name)
    written = flatten(tomllib.loads(resources.files("vrfer.training.recipes").joinpath(f"{name}.toml").read_text()))
    loaded, defaults = flatten(recipe.to_dict()), flatten(Recipe().to_dict())
    assert loaded.pop("_origin") == recipe.origin == f"vrfer:{name}"
    for key, value in loaded.items():   # what the file says, and every other key at its one default
        assert value == written.get(key, defaults[key] if key != "name" else name), key
    assert set(written) <= set(loaded)
    (tmp_path / "recipe.json").write_text(json.dumps(recipe.to_dict()))   # what a run records
    assert load_recorded(tmp_path) == recipe == from_record(recipe.to_dict())


def test_the_recipe_is_typed_and_its_values_take_the_types_of_their_defaults():
    r = from_dict({"augment": {"rotate": 10, "headset_edge": [0.3, 0.5]}, "dsd": {"sparsity": [0.1, 0.2, 0.3]}})
    assert r.augment.rotate == 10.0 and isinstance(r.augment.rotate, float)
    assert r.augment.headset_edge == (0.3, 0.5) and r.dsd.sparsity == (0.1, 0.2, 0.3)
    assert r.to_dict()["augment"]["headset_edge"] == [0.3, 0.5]
    with pytest.raises(Exception):    # frozen: a recipe changes only through replace, never in place
        r.seed = 3
    with pytest.raises(VrferError, match=r"^recipe: unknown key 'optim.lrr' \(known: "):
        from_dict({"optim": {"lrr": 0.1}})
    with pytest.raises(VrferError, match="unknown key 'origin'"):   # what vrfer records is not a key
        from_dict({"origin": "x"})


# ---------------------------------------------------------------- class sets

def test_class_sets_are_registered_by_name_and_checked(fresh_class_sets):
    assert class_set("ferplus8") == CLASSES
    assert class_set(["a", "b"]) == ("a", "b")
    assert register_class_set("test-pair", ("yes", "no")) == class_set("test-pair") == ("yes", "no")
    assert register_class_set("test-pair", ["yes", "no"]) == ("yes", "no")    # again, the same: fine
    for bad, words in ((lambda: register_class_set("test-pair", ("no", "yes")), "already registered"),
                       (lambda: class_set("nope"), "unknown class set 'nope'; known: ferplus8"),
                       (lambda: class_set(["a", "a"]), "at least 2 different"),
                       (lambda: class_set(["a"]), "at least 2 different"),
                       (lambda: class_set(["a", ""]), "list of class names"),
                       (lambda: register_class_set("", ("a", "b")), "non-empty")):
        with pytest.raises(VrferError, match=words):
            bad()


@pytest.mark.parametrize("name", list(CLASS_SETS))
def test_every_registered_class_set_gives_a_model_answering_with_its_classes(name):
    import torch

    from vrfer.training.model import build_model
    model = build_model(from_dict({"model": "vrfer-cnn-small", "image_size": 24, "classes": name})).eval()
    assert model.cfg.classes == class_set(name)
    with torch.no_grad():
        assert model(torch.zeros(2, *model.cfg.input_shape)).shape == (2, len(class_set(name)))


def test_a_face_set_in_another_class_set_keeps_the_faces_of_those_classes_relabelled(data):
    from vrfer.datasets.ferplus import load_ferplus
    names = ("surprise", "neutral", "happiness")
    for mode in ("majority", "crossentropy", "multi_target"):
        full = load_ferplus(data["ferplus"], "train", mode)
        sub = full.with_classes(names)
        kept = [i for i, label in enumerate(full.labels) if CLASSES[label] in names]
        assert 0 < len(sub) == len(kept) < len(full) and sub.classes == names
        assert [names[label] for label in sub.labels] == [CLASSES[full.labels[i]] for i in kept]
        assert sub.targets.shape == (len(kept), 3) and sub.dropped["outside the class set"] == len(full) - len(kept)
        if mode != "multi_target":    # distributions stay distributions
            assert np.allclose(sub.targets.sum(1), 1)
        assert full.with_classes(CLASSES) is full
    with pytest.raises(VrferError, match="no class 'pain'"):
        full.with_classes(("neutral", "pain"))


def test_a_three_class_set_trained_for_one_step(tmp_path, data, fresh_class_sets):
    """Adding a class set: register it, name it in a recipe (here: in this test). The run trains on the faces of
    those classes, its model carries their names, and predicting and evaluating with it answer among them."""
    from vrfer.datasets.ferplus import load_ferplus
    from vrfer.evaluate import evaluate
    from vrfer.inference.torch_backend import predict_proba
    from vrfer.models import create_model
    from vrfer.models.registry import read_config
    from vrfer.training.trainer import train
    names = register_class_set("toy3", ("surprise", "neutral", "happiness"))
    recipe = from_dict({"model": "vrfer-cnn-small", "image_size": 24, "classes": "toy3",
                        "data": {"limit": 8}, "optim": {"batch_size": 8, "epochs": 1}})
    run = train(recipe, data, tmp_path / "toy3", quiet=True)
    assert json.loads((run / "recipe.json").read_text())["classes"] == "toy3"
    assert read_config(run / "best.safetensors").classes == names == read_config(run / "final.safetensors").classes
    model = create_model(str(run / "final.safetensors"))
    assert len(model.cfg.extra["train_prior"]) == 3
    test = load_ferplus(data["ferplus"], "test")
    probs = predict_proba(model, test.images)
    assert probs.shape == (len(test), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    res = evaluate(model, test)
    assert list(res["per_class"]) == list(names) and res["n"] == sum(CLASSES[i] in names for i in test.labels)
    from vrfer.evaluate import evaluate_folder
    with pytest.raises(VrferError, match="takes a model of vrfer's classes"):   # labels.csv is in CLASSES order
        evaluate_folder(model, tmp_path)


def test_a_recipe_names_its_class_set_or_lists_it_and_a_bad_one_is_one_line(tmp_path, data, capsys):
    assert from_dict({"classes": ["neutral", "happiness"]}).class_names == ("neutral", "happiness")
    assert from_dict({}).class_names is None and load_recipe("cpu-full", ["classes=ferplus8"]).class_names == CLASSES
    for value, words in (("nope", "'classes': unknown class set 'nope'"), ("3", "'classes' must be"),
                         ('["neutral"]', "at least 2 different")):
        assert main(["train", "--recipe", "cpu-full", "--data-root", data["ferplus"], "--out", str(tmp_path / "r"),
                     "--set", f"classes={value}"]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(VrferError, match="not those of init_from"):   # a stage started from a model keeps its classes
        from vrfer.training.model import build_model
        build_model(from_dict({"init_from": "vrfer-full", "classes": ["neutral", "happiness"]}))


def test_resuming_with_another_recipe_is_refused_naming_the_dotted_keys(tmp_path, data):
    from dataclasses import replace

    from vrfer.training.trainer import train
    recipe = from_dict({"model": "vrfer-cnn-small", "image_size": 24, "data": {"limit": 8},
                        "optim": {"batch_size": 8, "epochs": 1}})
    run = train(recipe, data, tmp_path / "r", quiet=True)
    assert train(recipe, data, run, resume=True, quiet=True) == run          # the same recipe: goes on
    other = replace(recipe, seed=5, optim=replace(recipe.optim, lr=0.5))
    with pytest.raises(VrferError, match=r"the recipe differs .*\(keys: optim\.lr, seed\)"):
        train(other, data, run, resume=True, quiet=True)
