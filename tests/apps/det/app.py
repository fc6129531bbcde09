import asyncio
import datetime
import random
import time
import uuid

from pydantic import BaseModel

from runtime import App

app = App()


@app.table("draws")
class Draw(BaseModel):
    t: float
    r: float
    u: str


@app.mutation
async def draw(ctx) -> dict:
    row = {"t": time.time(), "r": random.random(), "u": str(uuid.uuid4())}
    await ctx.db.insert("draws", row)
    return {**row, "now": ctx.now(), "dt": datetime.datetime.now().timestamp(), "same_rng": ctx.random.random()}


@app.query
async def clock(ctx) -> list[float]:
    a = time.time()
    for _ in range(100_000):
        pass
    return [a, time.time(), ctx.now()]


@app.mutation
async def nap(ctx) -> None:
    time.sleep(0.01)


@app.mutation
async def async_nap(ctx) -> None:
    await asyncio.sleep(0.01)


@app.query
async def system_random(ctx) -> float:
    return random.SystemRandom().random()


@app.action
async def action_clock(ctx) -> list[float]:
    a = time.time()
    await asyncio.sleep(0.02)
    return [a, time.time()]
