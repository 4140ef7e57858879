"""``InFlight``: callers that join share the snapshot being taken; the others take their own."""

from __future__ import annotations

import asyncio

import pytest

from flower_fileintel.sharing import InFlight


class Producer:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self) -> dict[str, int]:
        self.calls += 1
        number = self.calls
        await self.release.wait()
        if self.fail:
            raise RuntimeError("redis is down")
        return {"snapshot": number}


def test_callers_that_join_share_the_one_in_flight():
    async def main() -> None:
        produce = Producer()
        shared = InFlight(produce)
        first = asyncio.ensure_future(shared.take(join=False))
        await asyncio.sleep(0)
        joined = [asyncio.ensure_future(shared.take(join=True)) for _ in range(3)]
        await asyncio.sleep(0)
        produce.release.set()
        results = await asyncio.gather(first, *joined)
        assert produce.calls == 1
        assert all(r is results[0] for r in results)

    asyncio.run(main())


def test_a_caller_that_does_not_join_takes_its_own_and_later_ones_join_the_newest():
    async def main() -> None:
        produce = Producer()
        shared = InFlight(produce)
        first = asyncio.ensure_future(shared.take(join=False))
        await asyncio.sleep(0)
        fresh = asyncio.ensure_future(shared.take(join=False))  # the live hub: something changed
        await asyncio.sleep(0)
        joined = asyncio.ensure_future(shared.take(join=True))
        produce.release.set()
        assert (await first, await fresh, await joined) == ({"snapshot": 1}, {"snapshot": 2}, {"snapshot": 2})

    asyncio.run(main())


def test_nothing_in_flight_means_a_new_one_even_for_a_joiner():
    async def main() -> None:
        produce = Producer()
        produce.release.set()
        shared = InFlight(produce)
        assert await shared.take(join=True) == {"snapshot": 1}
        assert await shared.take(join=True) == {"snapshot": 2}  # done ones are never reused

    asyncio.run(main())


def test_an_error_reaches_every_caller_and_a_gone_caller_does_not_cancel_the_others():
    async def main() -> None:
        produce = Producer(fail=True)
        shared = InFlight(produce)
        first = asyncio.ensure_future(shared.take(join=False))
        await asyncio.sleep(0)
        joined = asyncio.ensure_future(shared.take(join=True))
        await asyncio.sleep(0)
        first.cancel()  # its page closed
        await asyncio.sleep(0)
        produce.release.set()
        with pytest.raises(RuntimeError, match="redis is down"):
            await joined
        assert produce.calls == 1

    asyncio.run(main())
