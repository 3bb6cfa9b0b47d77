"""Flask extensions, created unbound; the app factory binds them (``init_app``)."""

from flask_babel import Babel
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from node.common import jsontext

# Named constraints so Alembic can drop/alter them on every backend (SQLite batch mode needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# JSON columns are written and read by node/common/jsontext.py (orjson, with the standard library's
# result wherever the two differ); on PostgreSQL psycopg is given the same functions.
db = SQLAlchemy(model_class=Base, engine_options={"json_serializer": jsontext.dumps,
                                                  "json_deserializer": jsontext.loads})
migrate = Migrate()
babel = Babel()
csrf = CSRFProtect()
login_manager = LoginManager()
