"""Pipeline settings: a TOML file, --nsigma and --astrometric-catalog end in one config."""

import pytest

from photdb.errors import ConfigError
from photdb.pipeline import load_config


def test_nsigma_and_toml_overrides(tmp_path):
    assert load_config().variability.nsigma == 15.0  # the notebook's cut by default
    assert load_config(nsigma=6.0).variability.nsigma == 6.0
    toml = tmp_path / "s.toml"
    toml.write_text("[variability]\nnsigma = 8.0\n[calibration]\nblend_error = false\n")
    cfg = load_config(toml)
    assert cfg.variability.nsigma == 8.0 and cfg.calibration.blend_error is False
    # the command line wins over the file, and the provenance id follows the cut
    cfg6 = load_config(toml, nsigma=6.0)
    assert cfg6.variability.nsigma == 6.0 and cfg6.calibration.blend_error is False
    assert cfg6.provenance_id() != cfg.provenance_id()


def test_bad_inputs_are_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[variability]\nnsigmaa = 3\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such astrometric catalogue"):
        load_config(astrometric_catalog=tmp_path / "missing.ecsv")
