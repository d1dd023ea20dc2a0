"""``markets.main:app`` for runners that take an app object (`mainspring run`, uvicorn).

Importing it reads the settings from the environment; a bad setting fails here, which
`mainspring run` reports as one line.
"""

from markets.app import create_app

app = create_app()
