"""A minimal FastAPI app: one endpoint that loads a user with an async SQLAlchemy session.

The shape of the FastAPI tutorials ("SQL (Relational) Databases", "Async
SQL"): an async engine on asyncpg, a session per request from a dependency
with ``yield``, a response model that leaves the password hash out.

Run it::

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres?ssl=disable \\
        uvicorn main:app --port 8000

``ssl=disable`` keeps the connection in plaintext so that ``pgwire-inspect
watch`` can decode it (asyncpg would otherwise try TLS first). The ``users``
table is the one ``pgwire-inspect demo`` creates.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres?ssl=disable")

engine = create_async_engine(DATABASE_URL)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class User(Base):
    """A row of ``users`` (id, username, email, hashed_password)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    email: Mapped[str | None] = mapped_column(String(255))
    hashed_password: Mapped[str | None] = mapped_column(String(255))


class UserOut(BaseModel):
    """What the endpoint returns: no password hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str | None


async def get_session() -> AsyncIterator[AsyncSession]:
    """One session per request, closed (its connection back to the pool) afterwards."""
    async with SessionLocal() as session:
        yield session


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()  # close the pooled connections at shutdown


app = FastAPI(lifespan=lifespan)


@app.get("/users/{username}", response_model=UserOut)
async def read_user(username: str,
                    session: Annotated[AsyncSession, Depends(get_session)]) -> User:
    """The user named ``username``, or 404."""
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise HTTPException(status_code=404, detail="user not found")
    return user
