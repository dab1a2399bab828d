import asyncio

from tests.routing.conftest import target


async def test_two_hundred_concurrent_calls_share_one_router_and_one_look_up(
    make_router, admin_state, ollama_url, openai_url, ollama_behavior
):
    admin_state.set_route("m", target("ollama", ollama_url, "a"))
    admin_state.set_route("c", target("openai", openai_url, "b"))
    router = make_router(max_connections=50)

    async def call(i: int) -> str:
        if i % 2:
            return (await router.generate(model="m", prompt=f"p{i}", max_tokens=i % 4 + 1))[
                "response"
            ]
        s = router.stream_chat(
            model="c", messages=[{"role": "user", "content": f"p{i}"}], max_tokens=i % 4 + 1
        )
        return "".join([t async for t in s])

    answers = await asyncio.gather(*(call(i) for i in range(200)))
    words = ["Hello", ",", " world", "!"]
    assert answers == ["".join(words[: i % 4 + 1]) for i in range(200)]
    assert sorted(m for m, _ in admin_state.lookups) == ["c", "m"]
    assert sorted(r["prompt"] for r in ollama_behavior.requests) == sorted(
        f"p{i}" for i in range(1, 200, 2)
    )
