"""An app whose module cannot be imported."""

import mainspring_no_such_module  # noqa: F401
