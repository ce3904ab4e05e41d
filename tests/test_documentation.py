"""The harness that runs the code of README.md and docs/ (the root conftest.py) fails broken blocks.

Each test writes a small Markdown file next to a copy of that conftest and runs pytest on it.
"""

import inspect
import re
import textwrap
from pathlib import Path

import pytest

import optax_stepdecay as osd

CONFTEST = Path(__file__).resolve().parents[1] / 'conftest.py'

# Built from parts so that this file's own text holds no code fence.
FENCE = '`' * 3


def run_markdown(pytester: pytest.Pytester, text: str) -> pytest.RunResult:
  pytester.makeconftest(CONFTEST.read_text())
  pytester.makefile('.md', README=textwrap.dedent(text).replace("'''", FENCE))
  return pytester.runpytest_inprocess('-p', 'no:cacheprovider', 'README.md')


def test_blocks_doctests_and_continuations_run(pytester):
  result = run_markdown(
    pytester,
    """
    '''python
    import math
    radius = 2.0
    '''

    '''python continuation
    >>> print(math.pi * radius**2)
    12.566...
    '''

    '''bash
    this shell block is not run
    '''
    """,
  )
  result.assert_outcomes(passed=2)


def test_a_block_starts_without_the_names_of_the_block_before(pytester):
  result = run_markdown(
    pytester,
    """
    '''python
    import math
    '''

    '''python
    print(math.pi)
    '''
    """,
  )
  result.assert_outcomes(passed=1, failed=1)
  result.stdout.fnmatch_lines(["*NameError: name 'math' is not defined*"])


def test_wrong_expected_output_fails(pytester):
  result = run_markdown(
    pytester,
    """
    '''python
    >>> 1 + 1
    3
    '''
    """,
  )
  result.assert_outcomes(failed=1)
  result.stdout.fnmatch_lines(['Expected:', '    3', 'Got:', '    2'])


def public_docstrings():
  for name in osd.__all__:
    yield name, inspect.getdoc(getattr(osd, name))
  for name, member in vars(osd.StageSchedule).items():
    if callable(member) and member.__doc__ and (name == '__call__' or not name.startswith('_')):
      yield f'StageSchedule.{name}', inspect.getdoc(member)


@pytest.mark.parametrize(('name', 'doc'), list(public_docstrings()))
def test_docstrings_read_as_plain_text(name, doc):
  # help() shows docstrings raw: formulas are written out, not as reST math or LaTeX.
  assert doc, f'{name} has no docstring'
  for markup in (':math:', '.. math::', '\\'):
    assert markup not in doc, f'{name} docstring contains {markup!r}'


# (De)serialisers implement no published method; every other public function cites its source.
UNCITED = {'schedule_from_dict', 'schedule_from_json'}


@pytest.mark.parametrize(
  'name', [n for n in osd.__all__ if inspect.isfunction(getattr(osd, n)) and n not in UNCITED]
)
def test_public_functions_cite_what_they_implement(name):
  doc = inspect.getdoc(getattr(osd, name))
  references = doc.split('\nReferences:\n', 1)
  assert len(references) == 2, f'{name} has no References section'
  assert 'https://' in references[1].split('\n\n', 1)[0]


def argument_doc(doc: str, name: str) -> str:
  """The entry of argument ``name`` in the Args section of a Google-style docstring."""
  args = doc.split('\nArgs:\n', 1)[1].split('\n\n', 1)[0]
  entries = re.split(r'\n(?=  \w+:)', '\n' + args)
  return next(e for e in entries if e.startswith(f'  {name}:'))


@pytest.mark.parametrize(
  'name',
  [
    n
    for n in osd.__all__
    if inspect.isfunction(getattr(osd, n))
    and 'decay_factor' in inspect.signature(getattr(osd, n)).parameters
  ],
)
def test_every_decay_factor_says_it_divides_where_others_multiply(name):
  # The paper's α divides the step; torch's gamma, optax's decay_rate (and t5x's decay_factor)
  # multiply it. Every signature with the name says which it is.
  entry = argument_doc(inspect.getdoc(getattr(osd, name)), 'decay_factor')
  assert 'divide' in entry and 'multipl' in entry, entry
