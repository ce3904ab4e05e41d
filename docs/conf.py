"""Sphinx configuration: the user guide and API reference of optax_stepdecay.

Builds offline: no intersphinx, MathJax served from the build itself.
"""

from sphinx.util import logging

import optax_stepdecay

project = 'optax_stepdecay'
author = 'the optax_stepdecay authors'
copyright = f'2026, {author}'
release = version = optax_stepdecay.__version__

extensions = [
  'myst_parser',
  'sphinx.ext.autodoc',
  'sphinx.ext.napoleon',
  'sphinx.ext.mathjax',
  'sphinx.ext.viewcode',
  'matplotlib.sphinxext.plot_directive',
  'sphinx-mathjax-offline',  # copies MathJax into _static: formulas render without a network
]

source_suffix = {'.md': 'markdown'}
exclude_patterns = ['_build']
myst_enable_extensions = ['dollarmath', 'amsmath']
myst_heading_anchors = 3

# Figures drawn from their code at every build (the code is shown above them).
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [('png', 110)]

html_theme = 'furo'
html_title = f'optax_stepdecay {release}'

# Google-style docstrings; type hints go into the argument list, where they are read.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_typehints = 'description'
autodoc_typehints_description_target = 'documented_params'
autodoc_member_order = 'bysource'
autodoc_type_aliases = {
  name: name
  for name in (
    'jax.typing.ArrayLike',
    'optax.Params',
    'optax.ScalarOrSchedule',
    'optax.Schedule',
  )
}


def _check_public_names(app, env):
  """Warns (an error under -W) about every public name without an API entry."""
  documented = env.domains['py'].objects
  for name in optax_stepdecay.__all__:
    if f'optax_stepdecay.{name}' not in documented:
      logging.getLogger(__name__).warning(
        'optax_stepdecay.%s is in __all__ but has no entry in the API reference', name
      )


def setup(app):
  app.connect('env-check-consistency', _check_public_names)
