#!/bin/sh
# Install a Halles node on a fresh Debian 12 (or 13) server, without Docker:
# PostgreSQL, the app under gunicorn (systemd), the worker (systemd), nginx with a Let's Encrypt
# certificate, nightly backups. Run it as root from the cloned repository:
#
#   sudo git clone https://<the Halles repository> /opt/halles
#   sudo /opt/halles/deploy/install.sh --domain halles.example.org --name "Les Halles de Lyon" \
#        --city Lyon --email admin@example.org
#
# Before: the domain's DNS record (A/AAAA) points to this server, and ports 80 and 443 are open.
# Running it again is safe: it keeps what exists (settings, keys, database) and redoes the rest.
set -eu

usage() {
  cat <<'USAGE'
usage: install.sh --domain DOMAIN --name NAME --city CITY --email EMAIL [--address ADDRESS]

  --domain   the node's public domain, e.g. halles.example.org (its DNS must point here)
  --name     the third-place's name, e.g. "Les Halles de Lyon"
  --city     its city, e.g. Lyon
  --email    the admin's email: Let's Encrypt writes there before a certificate expires
  --address  street address shown on the node's profile (optional)
USAGE
}

DOMAIN="" NAME="" CITY="" EMAIL="" ADDRESS=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --domain) DOMAIN=${2:-}; shift 2 ;;
    --name) NAME=${2:-}; shift 2 ;;
    --city) CITY=${2:-}; shift 2 ;;
    --email) EMAIL=${2:-}; shift 2 ;;
    --address) ADDRESS=${2:-}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -z "$DOMAIN" ] || [ -z "$NAME" ] || [ -z "$CITY" ] || [ -z "$EMAIL" ]; then
  usage >&2
  exit 2
fi
case "$DOMAIN" in
  http://*|https://*|*/*) echo "--domain is the name only, e.g. halles.example.org (no https://, no /)" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "run it as root: sudo $0 ..." >&2
  exit 1
fi

APP_DIR=$(cd "$(dirname "$0")/.." && pwd)
DATA_DIR=/var/lib/halles
INSTANCE=$DATA_DIR/instance
BACKUP_DIR=/var/backups/halles
ENV_FILE=/etc/halles/halles.env
URL="https://$DOMAIN"
step=0
say() { step=$((step + 1)); printf '\n[%s/10] %s\n' "$step" "$1"; }

say "system packages (Python, PostgreSQL, nginx, certbot)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip git postgresql postgresql-client nginx certbot >/dev/null

say "service user 'halles' and folders"
if ! id halles >/dev/null 2>&1; then
  useradd --system --user-group --home-dir "$DATA_DIR" --shell /usr/sbin/nologin halles
fi
install -d -o halles -g halles -m 0750 "$DATA_DIR"
install -d -o halles -g halles -m 0700 "$INSTANCE" "$BACKUP_DIR"
install -d -o root -g halles -m 0750 /etc/halles

say "Halles in $APP_DIR/.venv"
if [ ! -x "$APP_DIR/.venv/bin/python" ]; then
  python3 -m venv "$APP_DIR/.venv"
fi
"$APP_DIR/.venv/bin/pip" install --quiet --upgrade pip
"$APP_DIR/.venv/bin/pip" install --quiet -e "$APP_DIR"

say "PostgreSQL database 'halles' (reached through the local socket, no password)"
if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'halles'" | grep -q 1; then
  runuser -u postgres -- createuser halles
fi
if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'halles'" | grep -q 1; then
  runuser -u postgres -- createdb --owner halles halles
fi
# Event search folds accents with unaccent (PostgreSQL contrib); created here as the superuser so the
# migration finds it whatever the role's rights.
runuser -u postgres -- psql -q -d halles -c "CREATE EXTENSION IF NOT EXISTS unaccent"

say "settings in $ENV_FILE"
set_env() {
  # Replace the line NAME=... (or the commented # NAME=...) by NAME=value.
  escaped=$(printf '%s' "$2" | sed -e 's/[\\&|]/\\&/g')
  if grep -Eq "^#? ?$1=" "$ENV_FILE"; then
    sed -i -E "s|^#? ?$1=.*$|$1=$escaped|" "$ENV_FILE"
  else
    printf '%s=%s\n' "$1" "$2" >> "$ENV_FILE"
  fi
}
if [ ! -f "$ENV_FILE" ]; then
  cp "$APP_DIR/deploy/.env.example" "$ENV_FILE"
  set_env HALLES_URL "$URL"
  set_env HALLES_NAME "$NAME"
  set_env HALLES_CITY "$CITY"
  set_env HALLES_ADDRESS "$ADDRESS"
  set_env HALLES_INSTANCE "$INSTANCE"
  set_env DATABASE_URL "postgresql://halles@/halles?host=/var/run/postgresql"
  set_env HALLES_BEHIND_PROXY true
  set_env HALLES_BACKUP_DIR "$BACKUP_DIR"
  echo "wrote $ENV_FILE (edit it for email: HALLES_SMTP_URL)"
else
  echo "$ENV_FILE exists: kept as it is"
fi
chown root:halles "$ENV_FILE"
chmod 0640 "$ENV_FILE"

say "the 'halles' command for admins (/usr/local/bin/halles) and the node itself"
sed "s#/opt/halles#$APP_DIR#g" "$APP_DIR/deploy/halles-command.sh" > /usr/local/bin/halles
chmod 0755 /usr/local/bin/halles
if [ ! -f "$INSTANCE/node.json" ]; then
  /usr/local/bin/halles init --name "$NAME" --city "$CITY" --url "$URL" --address "$ADDRESS"
else
  echo "the node exists already ($INSTANCE/node.json): upgrading its database"
  /usr/local/bin/halles db upgrade
fi

say "systemd services: halles-web (gunicorn), halles-worker, nightly backup"
for unit in halles-web.service halles-worker.service halles-backup.service halles-backup.timer; do
  sed "s#/opt/halles#$APP_DIR#g" "$APP_DIR/deploy/systemd/$unit" > "/etc/systemd/system/$unit"
done
systemctl daemon-reload
systemctl enable --now halles-web.service halles-worker.service halles-backup.timer
systemctl restart halles-web.service halles-worker.service

say "nginx and the Let's Encrypt certificate for $DOMAIN"
mkdir -p /var/www/html
if [ ! -f "/etc/letsencrypt/live/$DOMAIN/fullchain.pem" ]; then
  # First an http-only site, so that Let's Encrypt can check the domain through nginx.
  cat > /etc/nginx/sites-available/halles <<NGINX
server {
    listen 80;
    listen [::]:80;
    server_name $DOMAIN;
    location /.well-known/acme-challenge/ { root /var/www/html; }
    location / { return 503; }
}
NGINX
  ln -sf /etc/nginx/sites-available/halles /etc/nginx/sites-enabled/halles
  rm -f /etc/nginx/sites-enabled/default
  nginx -t
  systemctl reload nginx || systemctl restart nginx
  if ! certbot certonly --webroot -w /var/www/html -d "$DOMAIN" --email "$EMAIL" --agree-tos --non-interactive \
       --deploy-hook "systemctl reload nginx"; then
    echo "" >&2
    echo "Let's Encrypt could not check $DOMAIN. Check that its DNS record points to this server" >&2
    echo "(this server's addresses: $(hostname -I 2>/dev/null || echo '?')) and that port 80 is open, then run" >&2
    echo "this script again: everything done so far is kept." >&2
    exit 1
  fi
fi
sed "s/halles\.example\.org/$DOMAIN/g" "$APP_DIR/deploy/nginx/halles.conf" > /etc/nginx/sites-available/halles
ln -sf /etc/nginx/sites-available/halles /etc/nginx/sites-enabled/halles
rm -f /etc/nginx/sites-enabled/default
nginx -t
systemctl reload nginx

say "checking the installation (halles doctor)"
sleep 3
/usr/local/bin/halles doctor || true

say "done"
cat <<DONE
Halles runs at $URL

Next steps (docs/deploy.md explains each):
  1. create your administrator account:   sudo halles admin create you@example.org
  2. set the mail server (HALLES_SMTP_URL) in $ENV_FILE, then:
                                          sudo systemctl restart halles-web halles-worker
  3. adapt your charter (charter_templates/README.md) and publish it:
                                          sudo halles charter publish charte.md --version 1.1
  4. join the network:                    sudo halles peer request https://OTHER-NODE
     and ask that node's admin to approve: halles peer approve $URL/actor
  5. check everything at any time:        sudo halles doctor
Backups run every night into $BACKUP_DIR (copy them elsewhere too).
DONE
