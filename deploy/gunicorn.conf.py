"""gunicorn settings for a Halles node: ``gunicorn -c deploy/gunicorn.conf.py`` (systemd unit and
Docker image both use it). Each value can be changed with the environment variable named beside it;
.env.example explains them."""

import os

wsgi_app = "node.wsgi:app"
proc_name = "halles-web"

# Where gunicorn listens: loopback behind nginx on the same machine; 0.0.0.0:8000 in a container.
bind = [os.environ.get("HALLES_BIND", "127.0.0.1:8000")]

# A third-place's traffic is small: 2 to 4 processes of 4 threads each serve it with room to spare,
# and keep memory low. Threads suit this app: requests wait on the database and on other nodes.
workers = int(os.environ.get("HALLES_WEB_WORKERS") or max(2, min(4, os.cpu_count() or 1)))
threads = int(os.environ.get("HALLES_WEB_THREADS") or 4)
worker_class = "gthread"

# Federation requests time out after 10 s on our side; 30 s leaves room, then the process is replaced.
timeout = 30
graceful_timeout = 20
keepalive = 5
# Recycle processes now and then so that a slow leak can never grow for weeks.
max_requests = 2000
max_requests_jitter = 200

# Only the local proxy may say that a request came over https (X-Forwarded-Proto). In Docker the
# proxy is another container: the compose file sets HALLES_FORWARDED_ALLOW_IPS to the compose network.
forwarded_allow_ips = os.environ.get("HALLES_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Logs go to stdout/stderr: journald (systemd) or Docker collect them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("HALLES_LOG_LEVEL", "info")
if os.environ.get("HALLES_LOG_FORMAT", "text") == "json":
    logger_class = "node.ops.logs.GunicornLogger"

# The heartbeat file of each worker process lives in memory, not on a slow or full disk.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# Recent gunicorn versions open a control socket in the home folder; several nodes on one machine
# (or a service user without a home) would collide on it, and Halles does not use it.
control_socket_disable = True
