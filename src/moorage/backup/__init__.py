"""Backups you can trust: create, list, verify, prune and restore PostgreSQL dumps.

- ``store``: the files (names, metadata, listing, finding, partial files, durable writes)
- ``create``: ``pg_dump`` streamed into a checked, committed backup
- ``verify``: checksum, size and every data block of the archive read back (on the stream at creation)
- ``restore``: into a new database, checked, swapped in with one transaction
- ``retention``: the retention policy (its defaults live there) and pruning

Capability floor: reaches PostgreSQL through ``moorage.pg`` targets; which
target (a URL or the environment's pod) is chosen by ``moorage.database``.
"""

from .create import create_backup, interruptible
from .restore import RestorePlan, plan_restore, restore_backup, stale_temp_pattern, swap_sql, temp_names
from .retention import PruneDecision, RetentionPolicy, prune, prune_plan
from .store import (
    SAFETY_LABELS,
    Backup,
    backup_dir,
    backup_stem,
    delete_backup,
    find_backup,
    kind_of,
    list_backups,
    partial_files,
    read_backup,
    remove_stale_partials,
    summarize,
)
from .verify import BackupInvalid, listing_header, listing_tables, read_archive, sha256_file, verify_backup

__all__ = [
    "SAFETY_LABELS", "Backup", "BackupInvalid", "PruneDecision", "RestorePlan", "RetentionPolicy",
    "backup_dir", "backup_stem", "create_backup", "delete_backup", "find_backup", "interruptible", "kind_of",
    "list_backups", "listing_header", "listing_tables", "partial_files", "plan_restore", "prune", "prune_plan",
    "read_archive", "read_backup", "remove_stale_partials", "restore_backup", "sha256_file", "stale_temp_pattern", "summarize",
    "swap_sql", "temp_names", "verify_backup",
]
