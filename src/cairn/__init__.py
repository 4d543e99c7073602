"""cairn: a self-hosted knowledge assistant that answers only from your documents, with citations.

Importing cairn is cheap: models, the database and heavy libraries load on first use.
"""

from cairn.errors import CairnError
from cairn.settings import Settings, get_settings

__version__ = "0.1.0"

__all__ = ["CairnError", "Settings", "__version__", "get_settings"]
