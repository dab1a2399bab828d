"""python -m routing generate MODEL PROMPT | python -m routing routes

Configured like get_llm_router(): ADMIN_API_URL, ATHENA_SERVICE_KEY, ATHENA_ROUTES_FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from routing import RoutingError, get_llm_router


async def _generate(args: argparse.Namespace) -> int:
    router = get_llm_router()
    try:
        stream = router.stream(
            args.model,
            args.prompt,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            system=args.system,
        )
        async with stream:
            async for text in stream:
                sys.stdout.write(text)
                sys.stdout.flush()
        sys.stdout.write("\n")
        r = stream.result
        if r is not None:
            tps = f"{r['tokens_per_sec']:.1f} tok/s" if r["tokens_per_sec"] else "? tok/s"
            ttft = f"{r['ttft_ms']:.0f} ms" if r["ttft_ms"] is not None else "?"
            print(
                f"[{r['backend']} {r['endpoint_url']} {r['upstream_model']}"
                f"{' (fallback)' if r['fallback'] else ''}] {r['completion_tokens']} tokens, "
                f"first token {ttft}, {r['latency_ms']:.0f} ms, {tps}, {r['done_reason']}",
                file=sys.stderr,
            )
        return 0
    finally:
        await router.aclose()


async def _routes(args: argparse.Namespace) -> int:
    router = get_llm_router()
    try:
        routes = await router.routes()
    finally:
        await router.aclose()
    rows = [("MODEL", "#", "BACKEND", "ENDPOINT", "UPSTREAM MODEL", "HEALTH", "SOURCE")]
    for route in sorted(routes, key=lambda r: r.model):
        for i, t in enumerate(route.targets, 1):
            rows.append(
                (
                    route.model if i == 1 else "",
                    str(i),
                    t.backend_type,
                    t.endpoint_url,
                    t.upstream_model,
                    t.health,
                    route.source,
                )
            )
        if not route.targets:
            rows.append((route.model, "-", "(no enabled target)", "", "", "", route.source))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m routing", description="Athena's LLM router")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="stream a completion to the terminal")
    gen.add_argument("model")
    gen.add_argument("prompt")
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--max-tokens", type=int, default=None)
    gen.add_argument("--system", default=None)
    sub.add_parser("routes", help="show each model's chain of targets and their health")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_generate(args) if args.command == "generate" else _routes(args))
    except RoutingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
