"""Runs the Python code blocks of README.md and docs/ as tests, with Sybil.

A ```python block starts from an empty namespace, so it must hold its own
imports; a ```python continuation block goes on in the namespace of the block
before it. A block whose first line starts with ``>>>`` is a doctest: the
output it shows is checked. Any other Python block is run and must not raise.
"""

import doctest

from sybil import Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.myst import CodeBlockParser
from sybil.parsers.myst import PythonCodeBlockParser

pytest_plugins = ['pytester']  # for tests/test_documentation.py
collect_ignore = ['docs/conf.py', 'docs/_build']

_OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _afresh(evaluator):
  def evaluate(example):
    example.namespace.clear()
    return evaluator(example)

  return evaluate


class _PythonBlocks:
  """Parses ```python blocks (fresh namespace) and ```python continuation blocks."""

  def __init__(self):
    self.fresh = PythonCodeBlockParser(doctest_optionflags=_OPTIONS)
    self.continued = PythonCodeBlockParser(doctest_optionflags=_OPTIONS)
    self.continued.codeblock_parser = CodeBlockParser('python continuation', PythonEvaluator())

  def __call__(self, document):
    yield from self.continued(document)
    for block in self.fresh.codeblock_parser(document):
      regions = [block]
      if block.parsed.startswith('>>>'):
        regions = list(self.fresh.doctest_parser(block.parsed, document.path))
        for region in regions:
          region.adjust(block, block.parsed)
      regions[0].evaluator = _afresh(regions[0].evaluator)
      yield from regions


pytest_collect_file = Sybil(
  parsers=[_PythonBlocks()], patterns=['README.md', 'docs/*.md', 'docs/**/*.md']
).pytest()
