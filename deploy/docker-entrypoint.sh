#!/bin/sh
# Entry point of the Halles image:
#   setup   create the node on first start (`halles init` from HALLES_NAME, HALLES_CITY, HALLES_URL),
#           then bring the database to the latest schema (safe at every start)
#   web     gunicorn with deploy/gunicorn.conf.py
#   worker  `halles worker` (email, federation deliveries, received activities)
#   anything else is run as a command, e.g. `halles doctor`
set -eu

case "${1:-web}" in
  setup)
    if [ ! -f "$HALLES_INSTANCE/node.json" ]; then
      : "${HALLES_NAME:?set HALLES_NAME in .env}" "${HALLES_CITY:?set HALLES_CITY in .env}" "${HALLES_URL:?set HALLES_URL in .env}"
      echo "first start: creating the node $HALLES_NAME ($HALLES_URL)"
      halles init --name "$HALLES_NAME" --city "$HALLES_CITY" --url "$HALLES_URL" --address "${HALLES_ADDRESS:-}"
    else
      halles db upgrade
    fi
    ;;
  web)
    shift || true
    exec gunicorn -c /app/deploy/gunicorn.conf.py "$@"
    ;;
  worker)
    shift || true
    exec halles worker "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
