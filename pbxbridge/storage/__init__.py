"""Where pbxbridge keeps data: every schema and migration, PostgreSQL, the overrides store.

:mod:`~pbxbridge.storage.schema` holds the migrations of every database,
:mod:`~pbxbridge.storage.postgres` the PostgreSQL connection (bounded in time,
redacted errors) shared by the journal and the overrides, and
:mod:`~pbxbridge.storage.overrides` the manual overrides store. Nothing here
knows the journal built on top (an import contract checks it).
"""
