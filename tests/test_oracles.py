"""Parity tests cannot silently vanish in CI: a missing reference implementation fails there."""

import pytest

from tests.conftest import oracle


@pytest.mark.parametrize(
  ('environment', 'outcome'),
  [
    ({'CI': 'true'}, pytest.fail.Exception),
    ({'CI': 'true', 'OPTAX_STEPDECAY_ORACLES': 'optional'}, pytest.skip.Exception),
    ({}, pytest.skip.Exception),
    ({'OPTAX_STEPDECAY_ORACLES': 'required'}, pytest.fail.Exception),
  ],
)
def test_a_missing_oracle_fails_where_required_and_skips_elsewhere(
  monkeypatch, environment, outcome
):
  for name in ('CI', 'OPTAX_STEPDECAY_ORACLES'):
    monkeypatch.delenv(name, raising=False)
  for name, value in environment.items():
    monkeypatch.setenv(name, value)
  with pytest.raises(outcome, match='no_such_oracle_module'):
    oracle('no_such_oracle_module')


def test_an_installed_oracle_is_returned():
  assert oracle('json').dumps([1]) == '[1]'
