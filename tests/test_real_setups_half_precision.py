"""Real setups in bfloat16 and float16: the matrix's cases (``tests/real_setups.py``)."""

from __future__ import annotations

import pytest

from tests import real_setups as rs


@pytest.mark.parametrize(
  ('subject_name', 'wrapper_name', 'dtype_name'), rs.cases(['bfloat16', 'float16'])
)
def test_trains_in_every_half_precision_dtype_and_wrapper(subject_name, wrapper_name, dtype_name):
  rs.check_case(subject_name, wrapper_name, dtype_name)
