"""Typed configs: defaults, presets, overrides and one-line errors naming the key."""

import pytest

from maevae.config import (
    RunConfig,
    apply_overrides,
    dump_yaml,
    from_dict,
    list_presets,
    load_config,
    parse_override,
    to_dict,
)
from maevae.errors import ConfigError


def test_defaults_are_the_authors_binary_model():
    cfg = RunConfig()
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.lr_decay) == (100, 1e-3, 0.999998)
    assert (cfg.train.patience, cfg.train.max_decays, cfg.train.grad_clip) == (20, 3, 5.0)
    assert (cfg.train.ema_decay, cfg.train.init_batch, cfg.eval.nll_samples) == (0.999, 500, 4096)
    assert cfg.data.test_copies == 5 and cfg.seed == 524287


def test_round_trip_through_yaml():
    import yaml

    cfg = RunConfig()
    cfg.objective.eta = 1.0
    assert from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg


@pytest.mark.parametrize("data, needle", [
    ({"objective": {"eta": -1}}, "objective.eta"),
    ({"objective": {"etta": 1}}, "unknown config key objective.etta"),
    ({"train": {"batch_size": "big"}}, "train.batch_size"),
    ({"train": {"batch_size": 1}, "objective": {"eta": 1.0}}, "batch_size"),
    ({"eval": {"nll_samples": 0}}, "eval.nll_samples"),
    ({"model": {"decoder": {"mode": "huge"}}}, "'small', 'large'"),
    ({"train": {"betas": [0.9]}}, "train.betas"),
    ({"train": {"ddi": "yes"}}, "train.ddi"),
])
def test_bad_values_are_one_line_errors_naming_the_key(data, needle):
    with pytest.raises(ConfigError) as e:
        from_dict(data)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_override_parsing_and_types():
    assert parse_override("train.lr=3e-4") == {"train": {"lr": 3e-4}}
    cfg = apply_overrides(RunConfig(), ["train.max_epochs=2", "objective.eta=1"])
    assert cfg.train.max_epochs == 2 and cfg.objective.eta == 1.0
    assert isinstance(cfg.objective.eta, float)
    with pytest.raises(ConfigError, match="train.max_epochs"):
        apply_overrides(RunConfig(), ["train.max_epochs=two"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.lr")


def test_every_preset_loads_and_unknown_preset_is_an_error():
    names = list_presets()
    assert "mnist/mae_eta1.0_gamma0.5" in names and "mnist/vlae" in names
    for name in names:
        load_config(name)
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("mnist/nope")


def test_presets_encode_the_paper_rows():
    mae = load_config("mnist/mae_eta2.0_gamma0.5")
    assert (mae.objective.eta, mae.objective.gamma) == (2.0, 0.5)
    assert mae.objective.free_bits_mode == "off"
    fb = load_config("mnist/vlae_fb")
    assert fb.objective.free_bits_mode == "per_datadim" and fb.objective.free_bits == 0.01
    assert to_dict(load_config("mnist/resnet_vae_af"))["model"]["decoder"]["type"] == "resnet"
