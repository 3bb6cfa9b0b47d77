#!/bin/sh
# Restore a node from a `halles backup` archive on a server installed with deploy/install.sh:
#   sudo /opt/halles/deploy/restore.sh /path/to/halles-backup-....tar.gz [--force]
# Stops the web app and the worker, restores (refused over an existing node unless --force),
# starts them again and runs `halles doctor`.
set -eu

if [ "$#" -lt 1 ]; then
  echo "usage: $0 BACKUP.tar.gz [--force]" >&2
  exit 2
fi
archive=$(readlink -f "$1")
shift
if [ ! -r "$archive" ]; then
  echo "cannot read $archive" >&2
  exit 1
fi

echo "stopping halles-web and halles-worker..."
systemctl stop halles-worker halles-web
# The halles user must be able to read the archive.
copy=$(mktemp /tmp/halles-restore-XXXXXX.tar.gz)
cp "$archive" "$copy"
chown halles: "$copy"
status=0
/usr/local/bin/halles restore "$copy" "$@" || status=$?
rm -f "$copy"
echo "starting halles-web and halles-worker..."
systemctl start halles-web halles-worker
if [ "$status" -ne 0 ]; then
  echo "the restore did not happen (see the message above); the node runs as before" >&2
  exit "$status"
fi
sleep 3
/usr/local/bin/halles doctor || true
