"""File knowledge: chunks of shared files, searchable only within the scope they were shared in.

One interface (:class:`core.knowledge.base.KnowledgeStore`), one module per backend: SQLite
(embedded; FTS5 BM25 without an embedding model, vectors with one) and Amazon S3 Vectors.
"""
