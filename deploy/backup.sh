#!/bin/sh
# Back up the node into HALLES_BACKUP_DIR and remove archives older than HALLES_BACKUP_KEEP_DAYS.
# Run every night by halles-backup.timer (as the halles user, settings from /etc/halles/halles.env);
# by hand: `sudo systemctl start halles-backup` or `sudo -u halles /opt/halles/deploy/backup.sh`.
# Copy the archives to another machine as well (rsync, restic, your host's storage...).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
halles=${HALLES_BIN:-$here/../.venv/bin/halles}
dir=${HALLES_BACKUP_DIR:-/var/backups/halles}
keep=${HALLES_BACKUP_KEEP_DAYS:-14}

umask 077
mkdir -p "$dir"
"$halles" backup --output "$dir"
# -mtime +N: modified more than N whole days ago.
find "$dir" -maxdepth 1 -type f -name 'halles-backup-*.tar.gz' -mtime +"$keep" -print -exec rm -f {} +
