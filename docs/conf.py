"""Sphinx configuration of the supermel documentation site.

Build (from the repository root; no network needed)::

    pip install torch==2.13.0 -e ".[docs]"
    sphinx-build -W --keep-going -n -b html docs docs/_build/html

The gallery (examples/gallery/*.py) runs during the build: a broken example
breaks the build. ``SUPERMEL_DOCS_NO_GALLERY=1`` skips running it (pages
without figures, for quick edits of the prose).
"""

from __future__ import annotations

import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))  # the checkout's code, whatever is installed
sys.path.insert(0, os.path.join(HERE, "_ext"))

import supermel  # noqa: E402

project = "supermel"
author = "supermel developers"
copyright = "supermel developers"
version = release = supermel.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "supermel_docs",  # docs/_ext: the CLI reference directive, short-name references
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    # sphinx-gallery writes these; the gallery index is generated/index.rst
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.md5",
    "auto_examples/*.json",
]
# frontends-table.md and streaming-frontends.md start at a level-2 heading (they read well on GitHub
# too); Sphinx takes that heading as their title.
suppress_warnings = ["myst.header"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["supermel.css"]

# -- no network: intersphinx is off, so references to other projects' objects (numpy, torch,
# the Python standard library) are not resolved; the nitpicky check (-n) still covers every
# reference to supermel's own objects.
nitpick_ignore_regex = [
    (r"py:.*", r"(np|numpy|torch|scipy|librosa|transformers|faster_whisper|ray|datasets|onnx|onnxruntime|soundfile|soxr|websockets|asyncio|argparse|os|pathlib|typing|collections|threading|concurrent|dataclasses|enum|fractions|numbers|io|warnings|matplotlib)(\..*)?"),
    # private or deprecated modules that docstrings mention (no pages of their own)
    (r"py:.*", r"supermel\.(_\w+|kaldi|streaming_presets|streaming\.static_step|bench)(\..*)?"),
    # instance attributes described in their class's text, not documented one by one
    (r"py:attr", r"(copy_done|totals|port|recordings)"),
    (r"py:class", r"(Tensor|ndarray|Module|Path|PathLike|Fraction|Any|Callable|Sequence|Mapping|Iterable|Iterator|Optional|Union|Tuple|List|Dict|Type|Generic|NamedTuple|Enum|Exception|ValueError|RuntimeError|TypeError|UserWarning|Warning|RuntimeWarning|DeprecationWarning|object|type|str|int|float|bool|bytes|dict|list|tuple|set|frozenset|callable|None)"),
]

# -- autodoc / autosummary / numpydoc
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # the types are in the numpydoc Parameters sections
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists the public methods itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

# -- MyST (the Markdown pages, README-style docs/*.md included as they are)
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4

# -- sphinx-gallery: examples/gallery/*.py run at build time, each makes a figure
sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples", "gallery"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,  # a failing example is a build error
    "plot_gallery": "False" if os.environ.get("SUPERMEL_DOCS_NO_GALLERY") else "True",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "min_reported_time": 0,
}
# Figures are drawn on white (figure.facecolor) whatever the theme: legible in dark mode too.
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")
# numpydoc warns (a Python warning, not a Sphinx one) about the torchaudio-style "Shape" section it
# does not know; docs/_ext/supermel_docs.py moves such sections into the summary, so nothing is lost.
warnings.filterwarnings("ignore", message="Unknown section (Shape|Input Validity)", category=UserWarning)

# -- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"supermel {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "show_prev_next": True,
    "header_links_before_dropdown": 6,
}
html_context = {"default_mode": "auto"}
# pages without subpages: no empty "Section Navigation" column
html_sidebars = {page: [] for page in ("index", "getting-started", "cli", "benchmarks", "development", "changelog")}
html_show_sourcelink = False
html_copy_source = False

# "--preset" must stay two hyphens (docutils' smart quotes would make it an en dash)
smartquotes = False
