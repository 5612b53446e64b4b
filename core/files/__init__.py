"""Reading shared files: extraction (:mod:`core.files.extract`) and chunking
(:mod:`core.files.chunking`). Pure functions over bytes; no platform, no storage."""
