"""The demo's database: SQLite through SQLAlchemy, with seed data and a query counter.

The counter is what makes the demo honest: ``/api/stats`` reports how many SQL statements ran,
so a cache hit shows up as a request that ran none.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from typing import Any

from sqlalchemy import Engine, ForeignKey, String, create_engine, event, func, or_, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

__all__ = ["Database", "Product", "User"]


class Base(DeclarativeBase):
    """The demo's tables."""


class User(Base):
    """A user who can log in (the password is stored salted and hashed, never as given)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    email: Mapped[str] = mapped_column(String(120))
    bio: Mapped[str] = mapped_column(String(500), default="")
    password_hash: Mapped[str] = mapped_column(String(200))

    def public(self) -> dict[str, Any]:
        """What the API shows of a user to anyone (not the email address)."""
        return {"id": self.id, "name": self.name, "bio": self.bio}


class Product(Base):
    """A product in the catalogue."""

    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    category: Mapped[str] = mapped_column(String(40))
    price_cents: Mapped[int]
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    def public(self) -> dict[str, Any]:
        """What the API shows of a product."""
        return {
            "id": self.id, "name": self.name, "category": self.category,
            "price": self.price_cents / 100,
        }  # fmt: skip


#: Seed users: (name, password). The demo's page lists them so visitors can log in.
SEED_USERS = [("alice", "wonderland"), ("bob", "builder"), ("carol", "christmas")]
_SEED_PRODUCTS = [
    ("Kettle", "kitchen", 2999), ("Teapot", "kitchen", 1999), ("Mug", "kitchen", 899),
    ("Desk lamp", "office", 3499), ("Notebook", "office", 499), ("Fountain pen", "office", 4599),
    ("Backpack", "travel", 6999), ("Bottle", "travel", 1499), ("Travel adapter", "travel", 2199),
    ("Headphones", "audio", 8999), ("Speaker", "audio", 12999), ("Turntable", "audio", 24999),
]  # fmt: skip


def hash_password(password: str, salt: bytes) -> str:
    """A salted PBKDF2 hash of ``password``, as stored."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000)
    return f"{salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the stored hash (compared in constant time)."""
    salt_hex, _, digest_hex = stored.partition("$")
    expected = hash_password(password, bytes.fromhex(salt_hex)).partition("$")[2]
    return hmac.compare_digest(expected, digest_hex)


class Database:
    """An SQLite database with the demo's tables and seed data, and a statement counter.

    Args:
        url: an SQLAlchemy URL; the default is an in-memory database shared by all threads.

    """

    def __init__(self, url: str = "sqlite://") -> None:
        options: dict[str, Any] = {}
        if url in ("sqlite://", "sqlite:///:memory:"):
            # One connection for every thread: an in-memory database lives in its connection.
            options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        self.engine: Engine = create_engine(url, **options)
        self._lock = threading.Lock()
        self.queries = 0
        event.listen(self.engine, "before_cursor_execute", self._count)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        Base.metadata.create_all(self.engine)
        self._seed()

    def _count(self, *args: Any) -> None:
        with self._lock:
            self.queries += 1

    def session(self) -> Session:
        """A new ORM session (use it as a context manager)."""
        return self._sessions()

    def _seed(self) -> None:
        with self.session() as db, db.begin():
            if db.scalar(select(func.count()).select_from(User)):
                return
            for index, (name, password) in enumerate(SEED_USERS, start=1):
                salt = secrets.token_bytes(16)
                db.add(User(id=index, name=name, email=f"{name}@example.com",
                            password_hash=hash_password(password, salt)))  # fmt: skip
            for name, category, cents in _SEED_PRODUCTS:
                db.add(Product(name=name, category=category, price_cents=cents))

    # -- the queries the API runs ----------------------------------------------------------

    def products(self) -> list[dict[str, Any]]:
        """Every product, by id."""
        with self.session() as db:
            return [p.public() for p in db.scalars(select(Product).order_by(Product.id))]

    def user(self, user_id: int) -> dict[str, Any] | None:
        """One user, or ``None``."""
        if not _storable_id(user_id):
            return None
        with self.session() as db:
            found = db.get(User, user_id)
            return None if found is None else found.public()

    def update_user(self, user_id: int, changes: dict[str, str]) -> dict[str, Any] | None:
        """Apply ``changes`` (email, bio) to a user; return the user as stored, or ``None``."""
        if not _storable_id(user_id):
            return None
        with self.session() as db, db.begin():
            found = db.get(User, user_id)
            if found is None:
                return None
            for field in ("email", "bio"):
                if field in changes:
                    setattr(found, field, changes[field])
            return found.public()

    def search(self, text: str, category: str | None, limit: int) -> list[dict[str, Any]]:
        """Products whose name contains ``text`` (any case), in ``category`` if given."""
        query = select(Product).where(Product.name.ilike(f"%{_like_escape(text)}%", escape="\\"))
        if category:
            query = query.where(Product.category == category)
        with self.session() as db:
            rows = db.scalars(query.order_by(Product.id).limit(limit))
            return [p.public() for p in rows]

    def login(self, name: str, password: str) -> int | None:
        """The id of the user with that name and password, or ``None``."""
        with self.session() as db:
            found = db.scalar(select(User).where(or_(User.name == name, User.email == name)))
        # An unknown name costs the same hashing as a wrong password: timing tells nothing.
        stored = _DUMMY_HASH if found is None else found.password_hash
        if not check_password(password, stored) or found is None:
            return None
        return found.id


_DUMMY_HASH = hash_password("not a password", secrets.token_bytes(16))


def _storable_id(user_id: int) -> bool:
    # SQLite's integers are 64-bit: a larger id is no user, not an overflow in the driver.
    return -(2**63) <= user_id < 2**63


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
