"""servesim: a digital twin of an LLM serving engine."""

import os

from servesim.compiled import use_sources_where_needed

__version__ = "0.1.0"

# Before any engine module is imported: the compiled core (`make compile`) runs only while it matches its sources.
use_sources_where_needed(pure=os.environ.get("SERVESIM_PURE") == "1")
