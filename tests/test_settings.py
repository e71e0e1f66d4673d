"""The settings table: a setting declared once appears in the command line, the estimator and the
JSON; errors are data (ConfigError's fields), never parsed from their text; `jaxreg train` runs
without the sweep's modules."""

import dataclasses
import json
import subprocess
import sys

import pytest

import jaxreg
from jaxreg import validate
from jaxreg.cli import flags, main
from jaxreg.config import TrainConfig, setting, settings
from jaxreg.errors import ConfigError


def _extended():
    """TrainConfig with one more setting, declared as every setting is."""
    throwaway = setting(0.5, kind="traced", check=lambda v, _: validate.real("throwaway", v, "a number in (0, 1)",
                                                                              lambda x: 0 < x < 1),
                        flag="--throwaway", metavar="T", parse=float, sklearn="throw_away",
                        help="a setting that exists only in this test")
    return dataclasses.make_dataclass("TrainConfig", [("throwaway", float, throwaway)], bases=(TrainConfig,),
                                      frozen=True)


def test_a_new_setting_appears_in_the_cli_the_estimator_and_the_json(monkeypatch, capsys):
    Extended = _extended()
    monkeypatch.setattr("jaxreg.config.TrainConfig", Extended)  # the table every front end reads
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--throwaway T" in capsys.readouterr().out
    assert main(["train", "--iterations", "10", "--throwaway", "0.25", "--json", "--no-cache"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["throwaway"] == 0.25
    assert main(["train", "--iterations", "10", "--throwaway", "2", "--no-cache"]) == 2
    assert capsys.readouterr().err.strip() == "jaxreg: error: --throwaway: got 2, expected a number in (0, 1)"

    pytest.importorskip("sklearn")
    from sklearn.base import clone

    from jaxreg.sklearn import MLPClassifier, estimator_init

    class Estimator(MLPClassifier):
        _table = Extended
        __init__ = estimator_init(Extended)

    assert Estimator().get_params()["throw_away"] == 0.5
    assert clone(Estimator(throw_away=0.3)).get_params()["throw_away"] == 0.3
    assert Estimator(throw_away=0.3)._config(2).throwaway == 0.3
    with pytest.raises(ConfigError, match=r"^throw_away: got 1.5, expected a number in \(0, 1\)$"):
        Estimator(throw_away=1.5)._config(2)


def test_every_setting_has_one_flag_one_estimator_name_and_one_json_key():
    table = settings()
    flag_names = [s.flag for _, s in table.values()]
    estimator_names = [s.sklearn or name for name, (_, s) in table.items()]
    assert len(set(flag_names)) == len(flag_names) and len(set(estimator_names)) == len(estimator_names)
    assert list(TrainConfig([2, 3, 1]).to_json()) == list(table)
    assert {s.kind for _, s in table.values()} == {"static", "traced", "loop"}
    assert [n for n, (_, s) in table.items() if s.kind == "traced"] == list(jaxreg.config.Hyper._fields)


def test_config_errors_carry_their_fields():
    with pytest.raises(jaxreg.ConfigError) as info:
        TrainConfig([2, 3, 1], keep_prob=2.0)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.field, err.got, err.expected) == ("keep_prob", 2.0,
                                                  "values in (0, 1] (the probability of keeping a unit; 1 means "
                                                  "no dropout)")
    assert str(err) == f"keep_prob: got [2.0], expected {err.expected}"


class _Reworded(ConfigError):
    def __str__(self):
        return "a message in other words, with no field name in front"


def test_front_ends_rename_from_the_fields_not_the_text():
    """A reworded message changes nothing: the command line and the estimator read the error's fields."""
    args = flags.Parser().parse_args([])
    args.keep_prob = (0.0,)
    renamed = flags.named(_Reworded("keep_prob", [0.0, 0.0], "values in (0, 1]"), args)
    assert (renamed.field, renamed.shown, renamed.expected) == ("--keep-prob", "0", "values in (0, 1]")
    assert str(flags.named(_Reworded("dtype", "float16", "one of float32, float64"), args)) \
        == "a message in other words, with no field name in front"  # no --precision flag here: kept as it is
    pytest.importorskip("sklearn")
    from jaxreg.sklearn import _named

    assert _named(_Reworded("dtype", "float16", "one of float32, float64")).field == "precision"
    assert _named(_Reworded("validation_split", 2.0, "a fraction in (0, 1)")).field == "validation_fraction"


def test_train_imports_neither_sweep_nor_selection(tmp_path):
    code = ("import sys; from jaxreg.cli import main; "
            "status = main(['train', '--iterations', '20', '--validation-split', '0.2', '--json', '--no-cache']); "
            "print(status, sorted(m for m in sys.modules if m.startswith('jaxreg')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    status, loaded = out.strip().splitlines()[-1].split(" ", 1)
    assert status == "0"
    assert "'jaxreg.training'" in loaded and "'jaxreg.members'" in loaded
    assert "'jaxreg.sweep'" not in loaded and "'jaxreg.selection'" not in loaded, loaded
