#!/bin/sh
# /usr/local/bin/halles on a server installed with deploy/install.sh: runs the `halles` command as
# the halles user with the node's settings (/etc/halles/halles.env), so an admin can type
# `sudo halles doctor`, `sudo halles admin create ...`, `sudo halles peer approve ...`.
set -eu

env_file=${HALLES_ENV_FILE:-/etc/halles/halles.env}
app_dir=${HALLES_APP_DIR:-/opt/halles}

if [ -r "$env_file" ]; then
  # Read NAME=value lines literally (values may contain spaces; nothing is evaluated by the shell).
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      ''|'#'*) continue ;;
      *=*) ;;
      *) continue ;;
    esac
    key=${line%%=*}
    value=${line#*=}
    case "$value" in
      \"*\") value=${value#\"}; value=${value%\"} ;;
    esac
    export "$key=$value"
  done < "$env_file"
fi

# The service user the node's files belong to (empty: stay the current user).
run_as=${HALLES_RUN_AS-halles}
if [ "$(id -u)" -eq 0 ] && [ -n "$run_as" ]; then
  exec runuser -u "$run_as" -- "$app_dir/.venv/bin/halles" "$@"
fi
exec "$app_dir/.venv/bin/halles" "$@"
