"""Raw log and planning: what is due, fetching in shards, the immutable raw log and its catalog,
the inbox, backfills and storage migration.
"""
